"""Text data: the publishers' files, the cache, splits, vocabulary, bad input.

Real-file tests skip when `<data_dir>/text/` is absent. They share one cache
folder (`SHARED_CACHE`), so the corpora are derived once per machine, and
none of them reads the 307 MB GloVe file (a tiny one stands in for it).
"""
import io
import json
import os
import pathlib
import tarfile
import tempfile

import numpy as np
import pytest

from metajax.settings import ConfigError
from metajax.tasks import array_cache as cache
from metajax.tasks.text import files, task as text_task, vocab
from metajax.tasks.text.corpus import load_corpus
from metajax.training.config import override

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_CACHE = os.path.join(tempfile.gettempdir(), "metajax-test-text-cache")


def text_data_dir_or_none():
  """$METAJAX_DATA_DIR, else ../shared/data beside the repo, if it has text/."""
  candidate = os.environ.get("METAJAX_DATA_DIR") or str(
      REPO_ROOT.parent / "shared" / "data")
  return candidate if os.path.isdir(os.path.join(candidate, "text")) else None


DATA_DIR = text_data_dir_or_none()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason=
                                "no text data: set METAJAX_DATA_DIR to a "
                                "folder holding text/")


@needs_data
def test_real_files_have_the_published_counts():
  huffpost = load_corpus("huffpost", DATA_DIR, SHARED_CACHE)
  assert huffpost.num_classes == 41 and huffpost.per_class == 900
  assert len(huffpost.labels_N) == 36_900
  np.testing.assert_array_equal(np.bincount(huffpost.labels_N), [900] * 41)
  clinc = load_corpus("clinc150", DATA_DIR, SHARED_CACHE)
  assert clinc.num_classes == 150 and clinc.per_class == 150
  assert len(clinc.group_names) == 10
  np.testing.assert_array_equal(np.bincount(clinc.class_group_C), [15] * 10)
  # Class-major with every row padded only at the end.
  assert np.all(np.diff(clinc.labels_N) >= 0)
  positions = np.arange(clinc.word_ids_NxL.shape[1])
  np.testing.assert_array_equal(
      clinc.word_ids_NxL != 0, positions < clinc.word_lengths_N[:, None])
  assert list(huffpost.vocab_V[:2]) == list(vocab.SPECIALS)


@needs_data
def test_splits_are_disjoint_and_cover_the_classes():
  for name, sizes in (("huffpost", (20, 5, 16)), ("clinc150", (90, 30, 30))):
    corpus = load_corpus(name, DATA_DIR, SHARED_CACHE)
    parts = text_task.split_classes(corpus, name)
    assert tuple(map(len, parts)) == sizes
    assert len(np.unique(np.concatenate(parts))) == corpus.num_classes
  clinc = load_corpus("clinc150", DATA_DIR, SHARED_CACHE)
  domain_sets = [set(clinc.class_group_C[p].tolist())
                 for p in text_task.split_classes(clinc, "clinc150")]
  assert [len(d) for d in domain_sets] == [6, 2, 2]
  assert not (domain_sets[0] & domain_sets[1] or domain_sets[0] &
              domain_sets[2] or domain_sets[1] & domain_sets[2])


def test_tokenisation_and_vocabulary_are_deterministic():
  texts = ["What's my balance?", "my balance, please", "Balance my card"]
  tokens = [vocab.tokenize(t) for t in texts]
  assert tokens[0] == ["what", "'", "s", "my", "balance", "?"]
  # Count first, then alphabetical; rare words dropped.
  assert vocab.build_vocab(tokens, 2) == ["<pad>", "<unk>", "balance", "my"]
  assert vocab.build_vocab(tokens[::-1], 2) == vocab.build_vocab(tokens, 2)
  ids = vocab.encode_words(tokens, vocab.build_vocab(tokens, 2), 7)
  np.testing.assert_array_equal(ids[1], [3, 2, 1, 1, 0, 0, 0])
  grams = vocab.encode_ngrams(tokens, 3, 101, 40)
  np.testing.assert_array_equal(grams, vocab.encode_ngrams(tokens, 3, 101, 40))
  assert grams.min() == 0 and grams.max() <= 101
  assert vocab.char_ngrams(["ab"], 3) == ["<ab", "ab>"]


def test_cache_detects_corruption_and_rebuilds(tmp_path):
  fields = {"ids_NxL": np.arange(12, dtype=np.int32).reshape(3, 4)}
  path = cache.cache_path(tmp_path, "text_test", "k" * 40)
  calls = []
  build = lambda: calls.append(1) or fields
  cache.cached(path, "k" * 40, ("ids_NxL",), build)
  cache.cached(path, "k" * 40, ("ids_NxL",), build)
  assert len(calls) == 1  # second read came from the cache
  data = bytearray(pathlib.Path(path).read_bytes())
  data[-200:-100] = bytes(100)
  pathlib.Path(path).write_bytes(bytes(data))
  with pytest.warns(RuntimeWarning, match="corrupt"):
    got = cache.cached(path, "k" * 40, ("ids_NxL",), build)
  assert len(calls) == 2
  np.testing.assert_array_equal(got["ids_NxL"], fields["ids_NxL"])
  assert cache.read_cache(path, "k" * 40, ("ids_NxL",)) is not None


def _tiny_glove(path, entries):
  body = json.dumps({"precision": 8, "l2NormIndex": 2, "wordIndex": 3,
                     "size": len(entries), "dimensions": 2,
                     "words": list(entries),
                     "vectors": {w: v + [1.0, i] for i, (w, v) in
                                 enumerate(entries.items())},
                     "unkVector": [0, 0, -1]},
                    separators=(",", ":")).encode()  # compact, as published
  with tarfile.open(path, "w:gz") as archive:
    info = tarfile.TarInfo(files.GLOVE_MEMBER)
    info.size = len(body)
    archive.addfile(info, io.BytesIO(body))


def test_glove_reader_keeps_only_the_vocabulary(tmp_path):
  path = tmp_path / "glove.tgz"
  _tiny_glove(path, {"the": [0.5, -1.0], '"': [2.0, 3.0], "cat": [1.0, 1.0]})
  vectors, found = files.read_glove(path, ["<pad>", '"', "cat", "dog"])
  np.testing.assert_array_equal(vectors, [[0, 0], [2, 3], [1, 1], [0, 0]])
  np.testing.assert_array_equal(found, [False, True, True, False])
  path.write_bytes(b"not a tgz")
  with pytest.raises(ValueError, match="glove.tgz"):
    files.read_glove(path, ["cat"])


def test_missing_and_corrupt_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="huffpost.json"):
    load_corpus("huffpost", tmp_path, tmp_path / "cache")
  with pytest.raises(FileNotFoundError, match="domains.json"):
    load_corpus("clinc150", tmp_path, tmp_path / "cache")
  (tmp_path / "text" / "huffpost").mkdir(parents=True)
  bad = tmp_path / "text" / "huffpost" / "huffpost.json"
  bad.write_text('{"raw": "a b", "label": 0}\n' * 3)
  with pytest.raises(ValueError, match=r"huffpost\.json.*900 lines each"):
    load_corpus("huffpost", tmp_path, tmp_path / "cache")
  bad.write_text('{"raw": "a b"}\n')
  with pytest.raises(ValueError, match="line 1"):
    load_corpus("huffpost", tmp_path, tmp_path / "cache")


def _clinc_config(**task):
  from experiments._text_base import text_config  # pylint: disable=g-import-not-at-top
  overrides = {"model": "text_ngram", "task.data_dir": DATA_DIR}
  overrides.update({f"task.{k}": v for k, v in task.items()})
  return text_config("clinc150", shots=1, algorithm="protonet",
                     overrides=overrides)


@needs_data
def test_bad_task_settings_fail_before_compiling(tmp_path, monkeypatch):
  monkeypatch.setenv("METAJAX_CACHE_DIR", SHARED_CACHE)
  build = lambda config: text_task.build(config, None)
  with pytest.raises(ConfigError, match="ways = 31 exceeds the 30 classes"):
    build(_clinc_config(ways=31))
  with pytest.raises(ConfigError, match="exceeds the 150 examples"):
    build(_clinc_config(shots=100, eval_queries=51))
  with pytest.raises(ConfigError, match=r"task.max_length.*truncate \d+ of "
                     r"22500 examples"):
    build(_clinc_config(max_length=20))
  # A word model without the GloVe file: named, before anything compiles.
  for name in ("data_full.json", "domains.json"):
    (tmp_path / "text" / "clinc150").mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join(DATA_DIR, "text", "clinc150", name),
               tmp_path / "text" / "clinc150" / name)
  config = override(_clinc_config(data_dir=str(tmp_path)),
                    {"model": "text_cnn"})
  with pytest.raises(ConfigError, match=r"(?s)GloVe.*wink-embeddings"):
    build(config)
