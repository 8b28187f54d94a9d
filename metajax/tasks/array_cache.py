"""Checksummed `.npz` caches of what a task domain derives from its files.

Omniglot's decoded images and the text tasks' token ids and vectors use it:
the file name carries a key (sha256 of the preprocessing version, the
settings and the sources' sha256), the file is written to a temporary name
and moved into place with `os.replace` (readers never see a partial file),
and it stores the sha256 of its own arrays, so a truncated or corrupted
cache is detected, reported with a warning and rebuilt.
"""
import hashlib
import os
import tempfile
import warnings
import zipfile

import numpy as np


def resolve_cache_dir(cache_dir=None):
  """`cache_dir`, else $METAJAX_CACHE_DIR, else ~/.cache/metajax."""
  if cache_dir is None:
    cache_dir = os.environ.get("METAJAX_CACHE_DIR") or os.path.join(
        "~", ".cache", "metajax")
  return os.path.abspath(os.path.expanduser(cache_dir))


def cache_key(*parts):
  """sha256 of the parts' text, one a line."""
  return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()


def cache_path(cache_dir, prefix, key):
  return os.path.join(resolve_cache_dir(cache_dir), f"{prefix}_{key[:24]}.npz")


def arrays_checksum(fields, order=None):
  """sha256 over the fields' names, dtypes, shapes and bytes, in `order`
  (default: sorted by name)."""
  digest = hashlib.sha256()
  for name in order or sorted(fields):
    array = np.ascontiguousarray(fields[name])
    digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def read_cache(path, key, names, label="Text", ordered=False):
  """The cached `names` fields, or None if absent; warns (naming the
  `label` cache) and returns None if the file is corrupt or was made from
  other sources. `ordered`: the checksum runs over `names` in their order."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as npz:
      fields = {name: npz[name] for name in names}
      stored_key, stored_checksum = str(npz["key"]), str(npz["checksum"])
    if stored_key != key:
      raise ValueError("its source key does not match")
    if stored_checksum != arrays_checksum(fields,
                                          names if ordered else None):
      raise ValueError("its checksum does not match its arrays")
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
    warnings.warn(f"{label} cache {path} is corrupt ({err}); rebuilding it.",
                  RuntimeWarning, stacklevel=3)
    return None
  return fields


def write_cache(path, key, fields, label="Text", order=None):
  """Writes atomically; warns (and leaves no file) if it cannot write;
  `order`: the checksum's field order (`arrays_checksum`)."""
  cache_dir = os.path.dirname(path)
  tmp_path = None
  try:
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=cache_dir,
                                    prefix=f".{label.lower()}_",
                                    suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, key=np.array(key),
               checksum=np.array(arrays_checksum(fields, order)), **fields)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except OSError as err:
    if tmp_path is not None and os.path.exists(tmp_path):
      os.remove(tmp_path)
    warnings.warn(f"Could not write {label} cache {path} ({err}); the data "
                  "will be preprocessed again next time.", RuntimeWarning,
                  stacklevel=3)


def cached(path, key, names, build):
  """The fields from the cache at `path`, else `build()` written there."""
  fields = read_cache(path, key, names)
  if fields is None:
    fields = build()
    write_cache(path, key, fields)
  return fields
