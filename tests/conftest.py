"""Shared test settings: strict numerics, float64 on demand, data location."""
import os
import pathlib

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

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
