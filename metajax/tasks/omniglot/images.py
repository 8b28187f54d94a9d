"""Omniglot: loading, preprocessing once into a cache, and character splits.

Layout: `load_omniglot` reads the official release from `<data_dir>/omniglot/`
(`images_background.zip` and `images_evaluation.zip`, or their extracted
folders). Every image is converted to grayscale, resized from 105x105 to 28x28
with PIL's LANCZOS filter, and inverted, so ink is 255 and background 0
(stored as uint8; samplers divide by 255, giving ink 1.0, background 0.0). The
result is cached as an `.npz` keyed by the sources' sha256, so later loads take
well under a second.

Images are sorted by (part, alphabet, character, drawer), background part
first, alphabets by folder name, characters by their `characterNN` number: the
global character index runs 0..963 over the background part and 964..1622 over
the evaluation part, and character c's D drawers are rows c*D..c*D+D-1.

Splits (`make_split`) are disjoint sets of characters:
  "maml" (default, as in Finn et al. 2017): all 1623 characters shuffled with
    `np.random.default_rng(seed)`; the first 1100 are train, the next 100 val
    and the remaining 423 test.
  "lake" (Lake et al. 2015): the 659 evaluation characters are test; 100
    background characters drawn with the same seeded shuffle are val and the
    other 864 are train.
Each character's 4 rotations are separate classes (see `omniglot_tasks`).
"""
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from metajax.tasks.omniglot import cache as omniglot_cache
from metajax.tasks.omniglot import files as omniglot_files
from metajax.tasks.omniglot.sampling import OmniglotTasks

SPLIT_NAMES = ("maml", "lake")
NUM_VAL_CHARACTERS = 100
MAML_NUM_TRAIN_AND_VAL = 1200


class OmniglotArrays(NamedTuple):
  """All images with per-image labels (host numpy arrays).

  Attributes:
    images_NxHxW: uint8 28x28 images, ink 255, background 0.
    alphabet_N: int32 alphabet index into `alphabet_names`.
    character_N: int32 global character index (see module docstring).
    drawer_N: int32 drawer index, 0-based (`YY - 1`).
    background_N: bool, True for the background part.
    alphabet_names: str array of alphabet folder names, background first.
  """
  images_NxHxW: np.ndarray
  alphabet_N: np.ndarray
  character_N: np.ndarray
  drawer_N: np.ndarray
  background_N: np.ndarray
  alphabet_names: np.ndarray

  @property
  def num_characters(self):
    return int(self.character_N.max()) + 1

  @property
  def num_drawers(self):
    return len(self.images_NxHxW) // self.num_characters


def _check_layout(fields, sources):
  """Every character must have the same drawers 0..D-1, once each."""
  character_N, drawer_N = fields["character_N"], fields["drawer_N"]
  counts_C = np.bincount(character_N)
  num_drawers = int(counts_C.max())
  bad_C = counts_C != num_drawers
  if not bad_C.any():
    bad_C = (drawer_N.reshape(-1, num_drawers) != np.arange(num_drawers)).any(1)
  if bad_C.any():
    bad = int(np.flatnonzero(bad_C)[0])
    first_image = np.flatnonzero(character_N == bad)[0]
    alphabet = fields["alphabet_names"][fields["alphabet_N"][first_image]]
    raise ValueError(
        f"Omniglot character {bad} (alphabet {alphabet}) has drawers "
        f"{sorted((drawer_N[character_N == bad] + 1).tolist())}, expected each "
        f"of 1..{num_drawers} once like the others; sources: "
        f"{[s.path for s in sources]}")


def load_omniglot(data_dir=None, cache_dir=None, *, resample="lanczos"):
  """Loads Omniglot, preprocessing it on the first call and caching it.

  Args:
    data_dir: directory containing `omniglot/`; default $METAJAX_DATA_DIR.
    cache_dir: where the `.npz` cache lives; default $METAJAX_CACHE_DIR, else
      `~/.cache/metajax`.
    resample: PIL filter for the 105->28 resize: "lanczos" (default),
      "bilinear" or "nearest" (what MAML's script effectively got, since PIL
      resizes mode-"1" images with NEAREST whatever the filter asked).

  Returns:
    `OmniglotArrays`.

  Raises:
    FileNotFoundError: the release is not where it was looked for.
    ValueError: a corrupt zip, an undecodable image or an unexpected layout.
  """
  if resample not in omniglot_files.RESAMPLE_FILTERS:
    raise ValueError(f"resample must be one of "
                     f"{sorted(omniglot_files.RESAMPLE_FILTERS)}, "
                     f"got {resample!r}")
  if data_dir is None:
    data_dir = os.environ.get("METAJAX_DATA_DIR") or None
  sources = omniglot_files.find_sources(data_dir)
  key = omniglot_cache.cache_key(
      [omniglot_files.source_digest(s) for s in sources], resample)
  path = omniglot_cache.cache_path(
      omniglot_cache.resolve_cache_dir(cache_dir), key)
  fields = omniglot_cache.read_cache(path, key)
  if fields is None:
    fields = omniglot_files.decode_sources(sources, resample)
    _check_layout(fields, sources)
    omniglot_cache.write_cache(path, key, fields)
  return OmniglotArrays(**fields)


def select_characters(arrays, character_ids):
  """An `OmniglotTasks` (device arrays) holding the given characters."""
  character_ids = np.asarray(character_ids, np.int32)
  images_CxDxHxW = arrays.images_NxHxW.reshape(
      arrays.num_characters, arrays.num_drawers,
      *arrays.images_NxHxW.shape[1:])[character_ids]
  return OmniglotTasks(images_CxDxHxW=jnp.asarray(images_CxDxHxW),
                       character_ids_C=jnp.asarray(character_ids))


class OmniglotSplits(NamedTuple):
  train: OmniglotTasks
  val: OmniglotTasks
  test: OmniglotTasks


def split_character_ids(arrays, name="maml", seed=0):
  """(train, val, test) sorted global character ids; see module docstring."""
  rng = np.random.default_rng(seed)
  num_characters = arrays.num_characters
  if name == "maml":
    if num_characters <= MAML_NUM_TRAIN_AND_VAL:
      raise ValueError(f"the maml split needs more than "
                       f"{MAML_NUM_TRAIN_AND_VAL} characters, "
                       f"got {num_characters}")
    order = rng.permutation(num_characters)
    num_train = MAML_NUM_TRAIN_AND_VAL - NUM_VAL_CHARACTERS
    parts = (order[:num_train], order[num_train:MAML_NUM_TRAIN_AND_VAL],
             order[MAML_NUM_TRAIN_AND_VAL:])
  elif name == "lake":
    is_background_C = arrays.background_N[::arrays.num_drawers]
    background = rng.permutation(np.flatnonzero(is_background_C))
    if len(background) <= NUM_VAL_CHARACTERS:
      raise ValueError(f"the lake split needs more than {NUM_VAL_CHARACTERS} "
                       f"background characters, got {len(background)}")
    parts = (background[NUM_VAL_CHARACTERS:], background[:NUM_VAL_CHARACTERS],
             np.flatnonzero(~is_background_C))
  else:
    raise ValueError(f"split name must be one of {SPLIT_NAMES}, got {name!r}")
  return tuple(np.sort(p).astype(np.int32) for p in parts)


def make_split(arrays, name="maml", seed=0):
  """Splits the characters into train, val and test `OmniglotTasks`.

  Args:
    arrays: `OmniglotArrays` from `load_omniglot`.
    name: "maml" (default) or "lake"; see the module docstring.
    seed: seed of the `np.random.default_rng` shuffle of characters.

  Returns:
    `OmniglotSplits(train, val, test)`, disjoint in characters.
  """
  return OmniglotSplits(*(select_characters(arrays, ids)
                          for ids in split_character_ids(arrays, name, seed)))
