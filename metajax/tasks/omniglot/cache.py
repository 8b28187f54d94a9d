"""The `.npz` cache of preprocessed Omniglot arrays.

The cache file name carries a key: the sha256 of the preprocessing version, the
resampling filter and the sha256 of every source's contents, so editing a
source or changing the preprocessing picks a new file. The file is written to a
temporary name and moved into place with `os.replace` (readers never see a
partial file), and it stores the sha256 of its own arrays, so a truncated or
corrupted cache is detected, reported with a warning and rebuilt.
"""
import hashlib
import os

from metajax.tasks import array_cache

# Bump when decoding, resizing, inversion or the sort order change.
PREPROCESS_VERSION = "omniglot-28x28-ink255-v1"
FIELDS = ("images_NxHxW", "alphabet_N", "character_N", "drawer_N",
          "background_N", "alphabet_names")


resolve_cache_dir = array_cache.resolve_cache_dir


def cache_key(source_digests, resample):
  text = "\n".join([PREPROCESS_VERSION, resample, *source_digests])
  return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir, key):
  return os.path.join(cache_dir, f"omniglot_{key[:24]}.npz")


def read_cache(path, key):
  """The cached fields, or None if absent; warns and returns None if corrupt."""
  return array_cache.read_cache(path, key, FIELDS, label="Omniglot",
                                ordered=True)


def write_cache(path, key, fields):
  """Writes atomically; warns (and leaves no file) if it cannot write."""
  array_cache.write_cache(path, key, fields, label="Omniglot", order=FIELDS)
