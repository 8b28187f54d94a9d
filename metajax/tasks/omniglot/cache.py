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
import tempfile
import warnings
import zipfile

import numpy as np

# Bump when decoding, resizing, inversion or the sort order change.
PREPROCESS_VERSION = "omniglot-28x28-ink255-v1"
FIELDS = ("images_NxHxW", "alphabet_N", "character_N", "drawer_N",
          "background_N", "alphabet_names")


def resolve_cache_dir(cache_dir=None):
  """`cache_dir`, else $METAJAX_CACHE_DIR, else ~/.cache/metajax."""
  if cache_dir is None:
    cache_dir = os.environ.get("METAJAX_CACHE_DIR") or os.path.join(
        "~", ".cache", "metajax")
  return os.path.abspath(os.path.expanduser(cache_dir))


def cache_key(source_digests, resample):
  text = "\n".join([PREPROCESS_VERSION, resample, *source_digests])
  return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir, key):
  return os.path.join(cache_dir, f"omniglot_{key[:24]}.npz")


def arrays_checksum(fields):
  digest = hashlib.sha256()
  for name in FIELDS:
    array = np.ascontiguousarray(fields[name])
    digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def read_cache(path, key):
  """The cached fields, or None if absent; warns and returns None if corrupt."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      fields = {name: npz[name] for name in FIELDS}
      stored_key, stored_checksum = str(npz["key"]), str(npz["checksum"])
    if stored_key != key:
      raise ValueError("its source key does not match")
    if stored_checksum != arrays_checksum(fields):
      raise ValueError("its checksum does not match its arrays")
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
    warnings.warn(f"Omniglot cache {path} is corrupt ({err}); rebuilding it.",
                  RuntimeWarning, stacklevel=3)
    return None
  return fields


def write_cache(path, key, fields):
  """Writes atomically; warns (and leaves no file) if it cannot write."""
  cache_dir = os.path.dirname(path)
  tmp_path = None
  try:
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=cache_dir, prefix=".omniglot_",
                                    suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, key=np.array(key), checksum=np.array(arrays_checksum(fields)),
               **fields)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except OSError as err:
    if tmp_path is not None and os.path.exists(tmp_path):
      os.remove(tmp_path)
    warnings.warn(f"Could not write Omniglot cache {path} ({err}); the data "
                  "will be preprocessed again next time.", RuntimeWarning,
                  stacklevel=3)
