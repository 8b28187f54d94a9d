"""The huge-page tunable: environment rules and the one-time restart."""
import platform
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from metajax.training import host_memory

GLIBC_LINUX = (platform.system() == "Linux"
               and platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(not GLIBC_LINUX, reason="glibc tunables are Linux-only")
def test_tunable_is_added_once_and_kept_with_others():
  assert host_memory.huge_page_environ({})["GLIBC_TUNABLES"] == (
      "glibc.malloc.hugetlb=1")
  added = host_memory.huge_page_environ(
      {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "PATH": "/bin"})
  assert added["GLIBC_TUNABLES"] == (
      "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
  assert added["PATH"] == "/bin"
  assert host_memory.huge_page_environ(
      {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # user's choice
  assert host_memory.huge_page_environ({"METAJAX_NO_HUGE_PAGES": "1"}) is None


@pytest.mark.skipif(not GLIBC_LINUX, reason="glibc tunables are Linux-only")
@pytest.mark.parametrize("opt_out", [False, True])
def test_restart_sets_the_tunable_for_the_new_process(opt_out):
  env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO_ROOT}
  if opt_out:
    env["METAJAX_NO_HUGE_PAGES"] = "1"
  code = ("import os, sys; print('start', flush=True); "
          "from metajax.training import host_memory; "
          "host_memory.reexec_with_huge_pages(); "
          "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])")
  out = subprocess.run([sys.executable, "-c", code, "a", "b"], env=env,
                       cwd=REPO_ROOT, capture_output=True, text=True,
                       check=True, timeout=120).stdout.split("\n")
  if opt_out:
    assert out[:2] == ["start", "None ['a', 'b']"]
  else:  # started twice, arguments kept, tunable set in the second
    assert out[:3] == ["start", "start", "glibc.malloc.hugetlb=1 ['a', 'b']"]
