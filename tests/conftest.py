"""Shared test settings: strict numerics, float64 on demand, data location."""
import atexit
import os
import pathlib
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# One compilation cache for the whole test session, this process and the
# processes the tests start (the variables are inherited): many tests build
# the same tiny programs, and a program compiled once is then loaded, not
# compiled again. The executables are the ones XLA would compile, so no
# result changes; the folder goes when the session ends.
_CACHE_DIR = tempfile.mkdtemp(prefix="metajax-test-xla-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
_CACHE = {"jax_compilation_cache_dir": _CACHE_DIR,
          "jax_persistent_cache_min_compile_time_secs": 0,
          "jax_persistent_cache_min_entry_size_bytes": 0}
for _name, _value in _CACHE.items():
  jax.config.update(_name, _value)
  os.environ.setdefault(_name.upper(), str(_value))

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled (for finite differences)."""
  with jax.enable_x64(True):
    yield


def data_dir_or_none():
  """$METAJAX_DATA_DIR, else ../shared/data beside the repo, if it exists."""
  candidate = os.environ.get("METAJAX_DATA_DIR") or str(
      REPO_ROOT.parent / "shared" / "data")
  return candidate if os.path.isdir(os.path.join(candidate, "omniglot")) else None
