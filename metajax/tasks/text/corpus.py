"""A corpus as class-major token-id arrays, derived once and cached.

`load_corpus` reads a corpus's files (`files`), tokenises it, builds the
vocabulary (`vocab`) and both input forms (word ids and hashed character
n-gram ids), and caches them keyed by the files' sha256 and the settings.
`load_vectors` caches the GloVe vectors of a vocabulary only, so the 307 MB
JSON is scanned once per vocabulary, and never by runs that use n-grams.
"""
from typing import NamedTuple

import numpy as np

from metajax.tasks import array_cache as cache
from metajax.tasks.text import files, vocab

PREPROCESS_VERSION = "text-v2"
CORPORA = ("huffpost", "clinc150")
FIELDS = ("word_ids_NxL", "word_lengths_N", "ngram_ids_NxL",
          "ngram_lengths_N", "labels_N", "vocab_V", "class_names_C",
          "class_group_C", "group_names")


class TextCorpus(NamedTuple):
  """A corpus sorted by class, every class with the same number of examples.

  Attributes:
    word_ids_NxL: int32 word ids (0 padding, 1 unknown), L the longest text.
    word_lengths_N: tokens per example.
    ngram_ids_NxL: int32 hashed character n-gram ids (0 padding).
    ngram_lengths_N: n-grams per example.
    labels_N: int32 class of each example, non-decreasing.
    vocab_V: the vocabulary (str), `vocab.SPECIALS` first.
    class_names_C: names of the classes (HuffPost: their numbers).
    class_group_C: int32 group of each class (CLINC150: its domain).
    group_names: names of the groups.
  """
  word_ids_NxL: np.ndarray
  word_lengths_N: np.ndarray
  ngram_ids_NxL: np.ndarray
  ngram_lengths_N: np.ndarray
  labels_N: np.ndarray
  vocab_V: np.ndarray
  class_names_C: np.ndarray
  class_group_C: np.ndarray
  group_names: np.ndarray

  @property
  def num_classes(self):
    return len(self.class_names_C)

  @property
  def per_class(self):
    return len(self.labels_N) // self.num_classes


def _sources(name, data_dir):
  if name == "huffpost":
    return files.find(data_dir, files.HUFFPOST)
  if name == "clinc150":
    return files.find(data_dir, files.CLINC_DATA, files.CLINC_DOMAINS)
  raise ValueError(f"corpus must be one of {CORPORA}, got {name!r}")


def _derive(name, paths, min_count, ngram, num_buckets):
  if name == "huffpost":
    texts, labels = files.read_huffpost(*paths)
    class_names = [str(c) for c in range(files.HUFFPOST_SHAPE[0])]
    class_group, group_names = np.zeros(len(class_names), np.int32), ["all"]
  else:
    texts, labels, class_names, class_group, group_names = files.read_clinc(
        *paths)
  order = np.argsort(labels, kind="stable")
  # HuffPost comes tokenised (Bao et al.'s tokens, space-separated).
  split = str.split if name == "huffpost" else vocab.tokenize
  tokens = [split(texts[i]) for i in order]
  words = vocab.build_vocab(tokens, min_count)
  word_lengths = vocab.lengths(tokens)
  ngram_lengths = vocab.lengths(tokens, ngram)
  return dict(
      word_ids_NxL=vocab.encode_words(tokens, words, int(word_lengths.max())),
      word_lengths_N=word_lengths,
      ngram_ids_NxL=vocab.encode_ngrams(tokens, ngram, num_buckets,
                                        int(ngram_lengths.max())),
      ngram_lengths_N=ngram_lengths, labels_N=labels[order],
      vocab_V=np.array(words, dtype=str),
      class_names_C=np.array(class_names, dtype=str),
      class_group_C=np.asarray(class_group, np.int32),
      group_names=np.array(group_names, dtype=str))


def load_corpus(name, data_dir=None, cache_dir=None, *, min_count=5, ngram=3,
                num_buckets=1 << 14):
  """Loads a corpus, deriving it on the first call and caching it.

  Args:
    name: "huffpost" or "clinc150".
    data_dir: folder holding `text/`; default $METAJAX_DATA_DIR.
    cache_dir: cache folder; default $METAJAX_CACHE_DIR, else
      `~/.cache/metajax`.
    min_count: words seen fewer times are out of vocabulary.
    ngram, num_buckets: character n-gram size and hash buckets.

  Returns:
    `TextCorpus`.

  Raises:
    FileNotFoundError: a file is not where it was looked for (all named).
    ValueError: a file that is not what its publisher distributes (named).
  """
  paths = _sources(name, data_dir)
  key = cache.cache_key(PREPROCESS_VERSION, name, min_count, ngram,
                        num_buckets, *map(files.file_digest, paths))
  fields = cache.cached(
      cache.cache_path(cache_dir, f"text_{name}", key), key, FIELDS,
      lambda: _derive(name, paths, min_count, ngram, num_buckets))
  return TextCorpus(**fields)


def load_vectors(vocab_V, data_dir=None, cache_dir=None):
  """GloVe vectors of a vocabulary, zero for padding and unknown words.

  Returns:
    `(vectors_VxD float32, found_V bool)`, cached by the vocabulary and the
    GloVe file's sha256.

  Raises:
    FileNotFoundError: naming the GloVe file looked for.
  """
  (path,) = files.find(data_dir, files.GLOVE)
  key = cache.cache_key(PREPROCESS_VERSION, "glove", files.file_digest(path),
                        cache.arrays_checksum({"vocab": np.asarray(vocab_V)}))

  def build():
    vectors_VxD, found_V = files.read_glove(path, [str(w) for w in vocab_V])
    vectors_VxD[:len(vocab.SPECIALS)], found_V[:len(vocab.SPECIALS)] = 0, False
    return dict(vectors_VxD=vectors_VxD, found_V=found_V)

  fields = cache.cached(cache.cache_path(cache_dir, "text_glove", key), key,
                        ("vectors_VxD", "found_V"), build)
  return fields["vectors_VxD"], fields["found_V"]
