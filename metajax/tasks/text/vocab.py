"""Tokenisation, the vocabulary and hashed character n-grams (host-side).

Words: HuffPost's published tokens (split on spaces); other text lower-cased
and split into runs of word characters and single punctuation marks. The vocabulary keeps the words seen at least
`min_count` times, ordered by count (descending) then alphabetically, so it
is the same on every machine; id 0 is padding and id 1 stands for every
other word (out of vocabulary).

Character n-grams: each word padded as `<word>`, every n-gram hashed by
CRC-32 into `num_buckets` buckets (ids 1..num_buckets, 0 is padding). They
need no pretrained vectors.
"""
import collections
import re
import zlib

import numpy as np

PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text):
  """Lower-cased word and punctuation tokens of `text`."""
  return _TOKEN.findall(text.lower())


def build_vocab(token_lists, min_count):
  """`SPECIALS` then the words seen at least `min_count` times, by count
  (descending) then alphabetically."""
  counts = collections.Counter(t for tokens in token_lists for t in tokens)
  kept = sorted((w for w, c in counts.items() if c >= min_count),
                key=lambda w: (-counts[w], w))
  return list(SPECIALS) + kept


def encode_words(token_lists, vocab, max_length):
  """Token ids, right-padded with `PAD`: int32 `(N, max_length)`; unknown
  words are `UNK`. Longer lists are cut (callers check lengths first)."""
  index = {w: i for i, w in enumerate(vocab)}
  ids_NxL = np.zeros((len(token_lists), max_length), np.int32)
  for n, tokens in enumerate(token_lists):
    row = [index.get(t, UNK) for t in tokens[:max_length]]
    ids_NxL[n, :len(row)] = row
  return ids_NxL


def char_ngrams(tokens, n):
  """The character n-grams of each `<token>`, in order."""
  grams = []
  for token in tokens:
    padded = f"<{token}>"
    grams.extend(padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
  return grams


def encode_ngrams(token_lists, n, num_buckets, max_length):
  """Hashed n-gram ids in 1..num_buckets, right-padded with 0:
  int32 `(N, max_length)`."""
  ids_NxL = np.zeros((len(token_lists), max_length), np.int32)
  for row, tokens in enumerate(token_lists):
    ids = [1 + zlib.crc32(g.encode()) % num_buckets
           for g in char_ngrams(tokens, n)[:max_length]]
    ids_NxL[row, :len(ids)] = ids
  return ids_NxL


def lengths(token_lists, n=None):
  """Tokens per example, or character n-grams per example when `n` is set."""
  if n is None:
    return np.array([len(t) for t in token_lists], np.int64)
  return np.array([len(char_ngrams(t, n)) for t in token_lists], np.int64)


def idf(ids_NxL, num_rows):
  """Smoothed inverse document frequency of each id over the rows,
  log((1 + N) / (1 + df)) + 1 (scikit-learn's form); padding (id 0) counts
  in no row."""
  ids_NxL = np.asarray(ids_NxL, np.int64)
  rows_NxL = np.broadcast_to(np.arange(len(ids_NxL))[:, None], ids_NxL.shape)
  pairs = np.unique((rows_NxL * num_rows + ids_NxL)[ids_NxL != 0])
  df_V = np.bincount(pairs % num_rows, minlength=num_rows)
  return np.log((1 + len(ids_NxL)) / (1 + df_V)) + 1
