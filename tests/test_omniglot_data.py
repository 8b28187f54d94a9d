"""Omniglot pipeline: loading, cache, errors and splits; the in-jit sampler.

Most tests use a tiny fake release written to tmp_path (2 alphabets x 2
characters x 20 drawers per part). The real-data tests read the release from
$METAJAX_DATA_DIR (else <repo>/../shared/data) and preprocess it once per
session; they are skipped only if that directory does not exist.
"""
import os
import pathlib
import shutil
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from metajax.tasks.omniglot import (
    load_omniglot, make_split, make_task_sampler, sample_tasks,
    select_characters, split_character_ids)
from metajax.tasks.omniglot import files as omniglot_files

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PARTS = {"background": ("Beta", "Alpha"), "evaluation": ("Gamma", "Delta")}
CHARS_PER_ALPHABET, DRAWERS = 2, 20


def write_fake_omniglot(root, as_folders=False, seed=0):
  """A fake release in root/omniglot; image ink (0) density 0.3."""
  rng = np.random.default_rng(seed)
  out = root / "omniglot"
  for part, alphabets in PARTS.items():
    members = {}
    for alphabet in alphabets:
      for c in range(1, CHARS_PER_ALPHABET + 1):
        for d in range(1, DRAWERS + 1):
          name = f"images_{part}/{alphabet}/character{c:02d}/0001_{d:02d}.png"
          members[name] = Image.fromarray(rng.random((105, 105)) > 0.3)
    if as_folders:
      for name, image in members.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / name)
    else:
      out.mkdir(parents=True, exist_ok=True)
      with zipfile.ZipFile(out / f"images_{part}.zip", "w") as archive:
        for name, image in members.items():
          with archive.open(name, "w") as f:
            image.save(f, format="PNG")
  return root


@pytest.fixture
def fake_dir(tmp_path):
  return write_fake_omniglot(tmp_path / "data")


@pytest.fixture
def cache_dir(tmp_path):
  return tmp_path / "cache"


def assert_arrays_equal(a, b):
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_fake_load_labels_order_and_inversion(fake_dir, cache_dir):
  arrays = load_omniglot(fake_dir, cache_dir)
  assert arrays.images_NxHxW.shape == (160, 28, 28)
  assert arrays.images_NxHxW.dtype == np.uint8
  assert list(arrays.alphabet_names) == ["Alpha", "Beta", "Delta", "Gamma"]
  np.testing.assert_array_equal(arrays.character_N, np.repeat(np.arange(8), 20))
  np.testing.assert_array_equal(arrays.drawer_N, np.tile(np.arange(20), 8))
  np.testing.assert_array_equal(arrays.alphabet_N, np.repeat(np.arange(4), 40))
  np.testing.assert_array_equal(arrays.background_N, np.arange(160) < 80)
  # Ink (30% of pixels) becomes the high value after inversion.
  assert 0.2 < arrays.images_NxHxW.mean() / 255 < 0.4


def test_extracted_folders_match_zips(fake_dir, tmp_path, cache_dir):
  folders = write_fake_omniglot(tmp_path / "folders", as_folders=True)
  assert_arrays_equal(load_omniglot(fake_dir, cache_dir),
                      load_omniglot(folders, cache_dir))
  assert len(list(cache_dir.glob("*.npz"))) == 2  # Keys differ by source.


def test_env_vars_used(fake_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("METAJAX_DATA_DIR", str(fake_dir))
  monkeypatch.setenv("METAJAX_CACHE_DIR", str(tmp_path / "env_cache"))
  load_omniglot()
  assert len(list((tmp_path / "env_cache").glob("omniglot_*.npz"))) == 1


def _forbid_decoding(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("decoded although the cache is valid")
  monkeypatch.setattr(omniglot_files, "decode_sources", fail)


def test_cache_reused(fake_dir, cache_dir, monkeypatch):
  first = load_omniglot(fake_dir, cache_dir)
  _forbid_decoding(monkeypatch)
  assert_arrays_equal(first, load_omniglot(fake_dir, cache_dir))
  assert not list(cache_dir.glob("*.tmp"))


def test_cache_invalidated_when_source_changes(tmp_path, cache_dir,
                                               monkeypatch):
  for as_folders in (False, True):
    root = write_fake_omniglot(tmp_path / f"d{as_folders}", as_folders, seed=1)
    before = load_omniglot(root, cache_dir)
    shutil.rmtree(root)
    write_fake_omniglot(root, as_folders, seed=2)
    after = load_omniglot(root, cache_dir)
    assert not np.array_equal(before.images_NxHxW, after.images_NxHxW)
  assert len(list(cache_dir.glob("*.npz"))) == 4
  _forbid_decoding(monkeypatch)
  load_omniglot(root, cache_dir, resample="lanczos")
  with pytest.raises(AssertionError, match="decoded"):
    load_omniglot(root, cache_dir, resample="nearest")  # Part of the key.


def test_corrupt_cache_detected_and_rebuilt(fake_dir, cache_dir):
  good = load_omniglot(fake_dir, cache_dir)
  (path,) = cache_dir.glob("*.npz")
  path.write_bytes(path.read_bytes()[:5000])  # Truncated.
  with pytest.warns(RuntimeWarning, match=f"cache {path}.*corrupt"):
    assert_arrays_equal(good, load_omniglot(fake_dir, cache_dir))
  with np.load(path) as npz:  # Valid npz, wrong content.
    fields = dict(npz)
  fields["images_NxHxW"] = 255 - fields["images_NxHxW"]
  np.savez(path, **fields)
  with pytest.warns(RuntimeWarning, match="checksum"):
    assert_arrays_equal(good, load_omniglot(fake_dir, cache_dir))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    load_omniglot(fake_dir, cache_dir)  # Rebuilt cache is valid.


def test_missing_data_errors(tmp_path, monkeypatch):
  monkeypatch.delenv("METAJAX_DATA_DIR", raising=False)
  with pytest.raises(FileNotFoundError, match="METAJAX_DATA_DIR"):
    load_omniglot(None, tmp_path)
  with pytest.raises(FileNotFoundError) as error:
    load_omniglot(tmp_path / "nowhere", tmp_path)
  message = str(error.value)
  expected_zip = tmp_path / "nowhere" / "omniglot" / "images_background.zip"
  for expected in (str(expected_zip), "images_evaluation.zip",
                   "brendenlake/omniglot", "METAJAX_DATA_DIR",
                   "extracted folder"):
    assert expected in message


def test_one_missing_part_named(fake_dir, tmp_path):
  os.remove(fake_dir / "omniglot" / "images_evaluation.zip")
  with pytest.raises(FileNotFoundError, match="images_evaluation") as error:
    load_omniglot(fake_dir, tmp_path)
  assert "images_background.zip" not in str(error.value).split("Get the")[0]


def test_corrupt_zip_named(fake_dir, tmp_path):
  path = fake_dir / "omniglot" / "images_evaluation.zip"
  path.write_bytes(b"not a zip at all")
  with pytest.raises(ValueError, match=f"{path} is not a readable zip"):
    load_omniglot(fake_dir, tmp_path)


def test_undecodable_image_named(fake_dir, tmp_path):
  path = fake_dir / "omniglot" / "images_background.zip"
  member = "images_background/Alpha/character03/0001_01.png"
  with zipfile.ZipFile(path, "a") as archive:
    archive.writestr(member, b"garbage")
  with pytest.raises(ValueError, match=f"decode.*{member}.*{path}"):
    load_omniglot(fake_dir, tmp_path)


def test_missing_drawer_named(fake_dir, tmp_path):
  folders = write_fake_omniglot(tmp_path / "folders", as_folders=True)
  character = folders / "omniglot/images_evaluation/Gamma/character02"
  os.remove(character / "0001_07.png")
  with pytest.raises(ValueError, match="Gamma.*expected each of 1..20"):
    load_omniglot(folders, tmp_path)


# ---- Sampler, on the fake release: 8 characters, 32 classes. ----

@pytest.fixture(scope="module")
def fake_tasks(tmp_path_factory):
  root = write_fake_omniglot(tmp_path_factory.mktemp("fake"))
  arrays = load_omniglot(root, tmp_path_factory.mktemp("fake_cache"))
  return arrays, select_characters(arrays, np.arange(8))


WAYS, SHOTS, QUERIES, TASKS = 6, 2, 3, 4


@pytest.fixture(scope="module")
def fake_batch(fake_tasks):
  sampler = make_task_sampler(fake_tasks[1], WAYS, SHOTS, QUERIES, TASKS)
  return jax.jit(lambda s, k: s(k))(sampler, jax.random.key(0))


def test_sampler_shapes_and_labels(fake_batch):
  (xs, ys), (xq, yq) = fake_batch
  assert xs.shape == (TASKS, WAYS * SHOTS, 28, 28, 1)
  assert xq.shape == (TASKS, WAYS * QUERIES, 28, 28, 1)
  assert xs.dtype == xq.dtype == jnp.float32
  assert ys.dtype == yq.dtype == jnp.int32
  assert 0.0 <= float(xs.min()) and float(xq.max()) <= 1.0
  for task in range(TASKS):  # Class-major; each label shots/queries times.
    np.testing.assert_array_equal(ys[task], np.repeat(np.arange(WAYS), SHOTS))
    np.testing.assert_array_equal(yq[task], np.repeat(np.arange(WAYS), QUERIES))


def test_sampled_images_are_rotated_stored_images(fake_tasks, fake_batch):
  """Each class is one (character, rotation), each example a distinct drawer."""
  images_CxDxHxW = np.asarray(fake_tasks[1].images_CxDxHxW)
  lookup = {}
  for c, d, k in np.ndindex(8, DRAWERS, 4):
    lookup[np.rot90(images_CxDxHxW[c, d], k).tobytes()] = (c, d, k)
  (xs, _), (xq, _) = fake_batch
  support = np.asarray(xs * 255).round().astype(np.uint8)[..., 0]
  query = np.asarray(xq * 255).round().astype(np.uint8)[..., 0]
  rotations = set()
  for task in range(TASKS):
    classes = set()
    for w in range(WAYS):
      examples = [lookup[image.tobytes()] for image in np.concatenate([
          support[task, w * SHOTS:(w + 1) * SHOTS],
          query[task, w * QUERIES:(w + 1) * QUERIES]])]
      assert len({(c, k) for c, _, k in examples}) == 1
      assert len({d for _, d, _ in examples}) == SHOTS + QUERIES
      classes.add(examples[0][::2])
      rotations.add(examples[0][2])
    assert len(classes) == WAYS
  assert rotations == {0, 1, 2, 3}


def test_sampler_deterministic_and_jit_agnostic(fake_tasks, fake_batch):
  dataset = fake_tasks[1]
  sampler = make_task_sampler(dataset, WAYS, SHOTS, QUERIES, TASKS)
  traces = []

  def step(key):
    traces.append(1)
    return sampler(key)  # Closing over the sampler also works.

  jitted = jax.jit(step)
  key = jax.random.key(0)
  assert_arrays_equal(jax.tree.leaves(fake_batch), jax.tree.leaves(jitted(key)))
  eager = sample_tasks(dataset, key, TASKS, WAYS, SHOTS, QUERIES)
  assert_arrays_equal(jax.tree.leaves(fake_batch), jax.tree.leaves(eager))
  other = jitted(jax.random.key(1))
  assert not np.array_equal(fake_batch.support[0], other.support[0])
  assert len(traces) == 1


def test_sampler_under_strict_promotion(fake_tasks):
  with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
    batch = sample_tasks(fake_tasks[1], jax.random.key(3), 2, 32, 1, 19)
  assert batch.query[0].shape == (2, 32 * 19, 28, 28, 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(ways=0), "ways must be a positive int, got 0"),
    (dict(shots=1.5), "shots must be a positive int, got 1.5"),
    (dict(queries=True), "queries must be a positive int, got True"),
    (dict(num_tasks=-1), "num_tasks must be a positive int, got -1"),
    (dict(shots=5, queries=16),
     r"shots \+ queries = 5 \+ 16 = 21 exceeds the 20"),
    (dict(ways=33), "ways = 33 exceeds the 32 classes"),
])
def test_sampler_validation(fake_tasks, kwargs, match):
  args = dict(ways=5, shots=1, queries=15, num_tasks=2) | kwargs
  with pytest.raises(ValueError, match=match):
    make_task_sampler(fake_tasks[1], **args)


# ---- Real data: preprocessed once per session. ----

@pytest.fixture(scope="session")
def real_arrays(tmp_path_factory):
  data_dir = pathlib.Path(os.environ.get("METAJAX_DATA_DIR")
                          or REPO_ROOT.parent / "shared" / "data")
  if not data_dir.is_absolute() and not data_dir.exists():
    data_dir = REPO_ROOT / data_dir
  if not data_dir.exists():
    pytest.skip(f"Omniglot data directory {data_dir} does not exist")
  cache = (os.environ.get("METAJAX_CACHE_DIR")
           or tmp_path_factory.mktemp("cache"))
  return load_omniglot(data_dir, cache)


def test_real_counts(real_arrays):
  assert real_arrays.images_NxHxW.shape == (32460, 28, 28)
  assert len(real_arrays.alphabet_names) == 50
  assert np.unique(real_arrays.alphabet_N[real_arrays.background_N]).size == 30
  assert real_arrays.num_characters == 1623 and real_arrays.num_drawers == 20
  np.testing.assert_array_equal(np.bincount(real_arrays.character_N), 20)
  assert real_arrays.background_N.sum() == 964 * 20
  assert real_arrays.images_NxHxW.mean() / 255 < 0.2  # Sparse ink is high.


@pytest.mark.parametrize("name, sizes", [
    ("maml", (1100, 100, 423)), ("lake", (864, 100, 659))])
def test_real_splits_sizes_and_disjoint(real_arrays, name, sizes):
  ids = split_character_ids(real_arrays, name, seed=0)
  assert tuple(len(i) for i in ids) == sizes
  assert np.unique(np.concatenate(ids)).size == 1623
  again = split_character_ids(real_arrays, name, seed=0)
  assert_arrays_equal(ids, again)
  other_seed = split_character_ids(real_arrays, name, seed=1)
  assert not np.array_equal(ids[0], other_seed[0])
  if name == "lake":
    np.testing.assert_array_equal(ids[2], np.arange(964, 1623))


def test_real_make_split_default_is_maml(real_arrays):
  splits = make_split(real_arrays)
  assert [s.num_classes for s in splits] == [4400, 400, 1692]
  test_ids = split_character_ids(real_arrays, "maml", 0)[2]
  np.testing.assert_array_equal(splits.test.character_ids_C, test_ids)
  np.testing.assert_array_equal(
      splits.test.images_CxDxHxW[5, 7],
      real_arrays.images_NxHxW[test_ids[5] * 20 + 7])
  with pytest.raises(ValueError, match="split name must be one of"):
    make_split(real_arrays, "vinyals")
