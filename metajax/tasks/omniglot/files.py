"""Finding and decoding the official Omniglot release (zips or folders).

Host-side only (numpy and PIL, no JAX). The release is two parts, each either a
zip or its extracted folder inside `<data_dir>/omniglot/`:

    images_background.zip  images_background/<Alphabet>/characterNN/XXXX_YY.png
    images_evaluation.zip  images_evaluation/<Alphabet>/characterNN/XXXX_YY.png

`YY` is the drawer (01-20). Images are 105x105 mode-"1" PNGs, white (1)
background and black (0) ink.
"""
import dataclasses
import hashlib
import io
import os
import re
import zipfile

import numpy as np
from PIL import Image

PARTS = ("background", "evaluation")
IMAGE_SIZE = 28
RESAMPLE_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
_IMAGE_NAME = re.compile(
    r"^images_(background|evaluation)/([^/]+)/character(\d+)/(\d+)_(\d+)\.png$")
_HOW_TO_GET = (
    "Get the official release from https://github.com/brendenlake/omniglot "
    "(files python/images_background.zip and python/images_evaluation.zip), "
    "put both zips (or their extracted folders) in <data_dir>/omniglot/, and "
    "pass data_dir=<data_dir> or set METAJAX_DATA_DIR=<data_dir>.")


@dataclasses.dataclass(frozen=True)
class Source:
  """One part of the release: `path` is a zip file or an extracted folder."""
  part: str
  path: str
  is_zip: bool


def find_sources(data_dir):
  """The (background, evaluation) `Source`s under `data_dir/omniglot`."""
  if data_dir is None:
    raise FileNotFoundError(
        "Omniglot data directory not given: data_dir is None and the "
        f"METAJAX_DATA_DIR environment variable is not set. {_HOW_TO_GET}")
  root = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), "omniglot")
  sources, missing = [], []
  for part in PARTS:
    zip_path = os.path.join(root, f"images_{part}.zip")
    folder = os.path.join(root, f"images_{part}")
    if os.path.isfile(zip_path):
      sources.append(Source(part, zip_path, True))
    elif os.path.isdir(folder):
      sources.append(Source(part, folder, False))
    else:
      missing.append(
          f"  {zip_path}  (or the extracted folder {folder}{os.sep})")
  if missing:
    raise FileNotFoundError(
        "Omniglot data not found. Looked for:\n" + "\n".join(missing) +
        f"\n{_HOW_TO_GET}")
  return tuple(sources)


def _open_zip(path):
  try:
    return zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as err:
    raise ValueError(f"Omniglot file {path} is not a readable zip ({err}); "
                     f"replace it with a fresh copy. {_HOW_TO_GET}") from err


def _image_names(source):
  """Relative names (`images_<part>/...png`) of a source's PNGs, sorted."""
  if source.is_zip:
    with _open_zip(source.path) as archive:
      names = archive.namelist()
  else:
    parent = os.path.dirname(source.path)
    names = [
        os.path.relpath(os.path.join(folder, f), parent).replace(os.sep, "/")
        for folder, _, files in os.walk(source.path) for f in files]
  names = sorted(n for n in names if n.lower().endswith(".png")
                 and not n.startswith("__MACOSX/")
                 and not os.path.basename(n).startswith("._"))
  if not names:
    raise ValueError(f"No PNG images found in Omniglot source {source.path}.")
  return names


def _iter_bytes(source, names):
  """Yields (name, bytes) for each name, with errors naming file and member."""
  if not source.is_zip:
    parent = os.path.dirname(source.path)
    for name in names:
      with open(os.path.join(parent, name), "rb") as f:
        yield name, f.read()
    return
  with _open_zip(source.path) as archive:
    for name in names:
      try:
        data = archive.read(name)
      except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"Corrupt member {name!r} in Omniglot zip "
                         f"{source.path}: {err}") from err
      yield name, data


def source_digest(source):
  """sha256 of a zip's bytes, or of a folder's sorted names and contents."""
  digest = hashlib.sha256()
  if source.is_zip:
    with open(source.path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  else:
    for name, data in _iter_bytes(source, _image_names(source)):
      digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "little"))
      digest.update(data)
  return digest.hexdigest()


def _decode(data, resample, where):
  """PNG bytes -> uint8 IMAGE_SIZE^2 with ink 255, background 0."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      gray = image.convert("L")  # Mode "1" would force NEAREST in resize.
  except (OSError, ValueError, Image.DecompressionBombError) as err:
    raise ValueError(f"Cannot decode Omniglot image {where}: {err}") from err
  small = gray.resize((IMAGE_SIZE, IMAGE_SIZE), RESAMPLE_FILTERS[resample])
  return 255 - np.asarray(small, dtype=np.uint8)


def decode_sources(sources, resample):
  """Decodes all images, sorted by (part, alphabet, character, drawer).

  Returns:
    A dict with `images_NxHxW` (uint8, ink 255), `alphabet_N`, `character_N`,
    `drawer_N` (int32, 0-based), `background_N` (bool) and `alphabet_names`.
  """
  records = []
  for source in sources:
    for name, data in _iter_bytes(source, _image_names(source)):
      where = f"{name!r} in {source.path}" if source.is_zip else (
          os.path.join(os.path.dirname(source.path), name))
      match = _IMAGE_NAME.match(name)
      if match is None or match.group(1) != source.part:
        raise ValueError(f"Unexpected file {where}: expected images_"
                         f"{source.part}/<Alphabet>/characterNN/XXXX_YY.png")
      _, alphabet, character, _, drawer = match.groups()
      sort_key = (PARTS.index(source.part), alphabet, int(character))
      image = _decode(data, resample, where)
      records.append((sort_key, int(drawer) - 1, image))
  records.sort(key=lambda r: (r[0], r[1]))
  characters = sorted({r[0] for r in records})
  alphabets = sorted({c[:2] for c in characters})
  character_index = {c: i for i, c in enumerate(characters)}
  alphabet_index = {a: i for i, a in enumerate(alphabets)}
  return dict(
      images_NxHxW=np.stack([r[2] for r in records]),
      alphabet_N=np.array([alphabet_index[r[0][:2]] for r in records],
                          np.int32),
      character_N=np.array([character_index[r[0]] for r in records], np.int32),
      drawer_N=np.array([r[1] for r in records], np.int32),
      background_N=np.array([r[0][0] == 0 for r in records], bool),
      alphabet_names=np.array([a[1] for a in alphabets], dtype=str),
  )
