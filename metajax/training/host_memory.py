"""Transparent huge pages for XLA:CPU's per-call buffers (Linux with glibc).

XLA:CPU allocates a compiled step's temporary buffer with `posix_memalign`
on every call and frees it after. A big one (the vmapped Omniglot Conv4
meta-step's) is above glibc's mmap threshold, so each call maps fresh pages
from the kernel and page faults take a large share of the step. glibc's
tunable `glibc.malloc.hugetlb=1` (glibc 2.35+) asks for transparent huge
pages on those mappings, which removes most of the faults (measurements in
benchmarks/README.md). Small problems (sine) are unaffected.

glibc reads tunables only when a process starts, so the command-line entry
points (`python -m metajax`, `python -m benchmarks.suite`) restart
themselves once with it set; set `METAJAX_NO_HUGE_PAGES=1` to opt out, or
export `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` yourself for your own
scripts. Where the kernel disables transparent huge pages, or on other
platforms, it changes nothing.
"""
import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "METAJAX_NO_HUGE_PAGES"


def huge_page_environ(environ=None):
  """`environ` (default os.environ) with the tunable added, or None.

  None when it is already there (any value), when `METAJAX_NO_HUGE_PAGES` is
  set, or off Linux with glibc.
  """
  environ = dict(os.environ if environ is None else environ)
  if (environ.get(OPT_OUT) or platform.system() != "Linux"
      or platform.libc_ver()[0] != "glibc"):
    return None
  tunables = environ.get("GLIBC_TUNABLES", "")
  if "glibc.malloc.hugetlb" in tunables:
    return None
  environ["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
  return environ


def reexec_with_huge_pages():
  """Restarts this process with `huge_page_environ()`; no-op if None.

  Call it first thing in a program's `__main__` (never from library code):
  the process image is replaced, with the same interpreter and arguments.
  """
  environ = huge_page_environ()
  if environ is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], environ)
