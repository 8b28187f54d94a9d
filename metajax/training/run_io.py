"""Files of a run directory, written so that a crash never corrupts them.

    config.json      the resolved config (and the experiment name)
    metrics.jsonl    one JSON object per logged step, flushed as written
    results.json     final evaluation and timings
    params.msgpack   final (or last good) meta-parameters
    *.png            plots
"""
import json
import math
import os
import tempfile

import flax.serialization
import jax
import numpy as np


def atomic_write_bytes(path: str, data: bytes):
  """Writes `data` to `path` via a temporary file and `os.replace`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def to_jsonable(value):
  """Converts numpy/jax scalars and arrays, tuples and NaN for JSON."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return to_jsonable(value.tolist() if value.ndim else value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def write_json(path: str, obj):
  atomic_write_bytes(path, json.dumps(to_jsonable(obj), indent=2).encode())


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


class MetricsLog:
  """Appends one JSON line per record; each line is flushed and fsynced."""

  def __init__(self, path: str):
    self.path = path
    self._file = open(path, "a", buffering=1)

  def write(self, record: dict):
    self._file.write(json.dumps(to_jsonable(record)) + "\n")
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self):
    self._file.close()


def read_metrics(path: str) -> list:
  """Every complete line of a metrics log (a torn last line is ignored)."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


def save_params(path: str, params):
  atomic_write_bytes(path, flax.serialization.to_bytes(params))


def load_params(path: str, template):
  """Params saved by `save_params`, restored into `template`'s structure."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"no saved parameters at {path}")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return flax.serialization.from_bytes(template, data)
  except Exception as e:
    raise ValueError(f"{path} is not a valid parameter file for this model "
                     f"config: {e}") from None
