"""The untrained baselines of the text tables: nearest class mean, no learning.

Each meta-test episode of the text experiments (the same episodes: the
task's `eval_tasks`, 1,000 from `eval.seed`, 25 queries per class) is
classified by the cosine similarity of each query's features to the mean
features of each class's support examples. Features, both TF-IDF weighted
with the inverse document frequency counted on the meta-train split's
examples only (idf = log((1 + N) / (1 + df)) + 1, scikit-learn's smoothed
form):
  glove: the idf-weighted mean of the GloVe 100-d vectors of the text's
    in-vocabulary words (words without a GloVe vector, rare words and
    padding are left out, not averaged in as zeros);
  char3: the idf-weighted counts of its hashed character 3-grams (those of
    `task.ngram`, `task.num_buckets`), L2-normalised.
Prints accuracy with its 95% interval for HuffPost 5-way and CLINC150 5-
and 30-way, 1- and 5-shot. `--ablation` also prints the variants the
weighting, the out-of-vocabulary rule and the distance are chosen against
(the first baseline of docs/text.md was "plain, all tokens, euclidean").

  PYTHONPATH=. python experiments/analysis/text_nearest_mean.py \
      [--num_tasks=1000] [--ablation] [--task=clinc150]

`--task` keeps only that corpus's settings (huffpost or clinc150).
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from metajax.backend import PORTABLE
from metajax.core.evaluation import mean_and_interval
from metajax.tasks.text import task as text_task
from metajax.tasks.text.corpus import load_vectors
from metajax.tasks.text.vocab import idf

from experiments._text_base import text_config

SETTINGS = (("huffpost", 5), ("clinc150", 5), ("clinc150", 30))


def accuracy_per_task(tasks, features_fn, ways, metric="cosine"):
  """Nearest-class-mean query accuracy of each task, shape `(T,)`."""
  def one(task):
    (x_s, y_s), (x_q, y_q) = task.support, task.query
    f_s, f_q = features_fn(x_s), features_fn(x_q)
    onehot_SxW = jax.nn.one_hot(y_s, ways)
    means_WxD = onehot_SxW.T @ f_s / jnp.sum(onehot_SxW, 0)[:, None]
    if metric == "cosine":
      unit = lambda a: a / jnp.maximum(
          jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
      scores_QxW = unit(f_q) @ unit(means_WxD).T
    else:
      scores_QxW = -jnp.sum((f_q[:, None] - means_WxD[None]) ** 2, -1)
    return jnp.mean((jnp.argmax(scores_QxW, -1) == y_q).astype(jnp.float32))
  return jax.jit(lambda t: jax.lax.map(one, t, batch_size=10))(tasks)


def glove_features(vectors_VxD, weight_V):
  """Weighted mean of the ids' vectors; weight 0 leaves a word out."""
  table_VxD, weight_V = jnp.asarray(vectors_VxD), jnp.asarray(weight_V)
  def features(ids_BxL):
    w_BxL = weight_V[ids_BxL] * (ids_BxL != 0)
    return jnp.sum(table_VxD[ids_BxL] * w_BxL[..., None], axis=1) / (
        jnp.maximum(jnp.sum(w_BxL, axis=1, keepdims=True), 1e-12))
  return features


def bag_features(weight_V):
  """Weighted counts of the ids (padding dropped), L2-normalised."""
  weight_V = jnp.asarray(weight_V)
  def features(ids_BxL):
    rows_BxL = jnp.broadcast_to(jnp.arange(ids_BxL.shape[0])[:, None],
                                ids_BxL.shape)
    counts_BxV = jnp.zeros((ids_BxL.shape[0], len(weight_V))).at[
        rows_BxL, ids_BxL].add(1.0)[:, 1:] * weight_V[1:]
    return counts_BxV / jnp.maximum(
        jnp.linalg.norm(counts_BxV, axis=-1, keepdims=True), 1e-12)
  return features


def variants(task_name, config, ablation):
  """{name: (features_fn, metric)}: the standard baseline first."""
  task = config.task
  corpus = text_task._corpus(  # pylint: disable=protected-access
      task_name, "", task.min_count, task.ngram, task.num_buckets)
  rows_CxM = np.arange(len(corpus.labels_N)).reshape(corpus.num_classes, -1)
  train_rows = rows_CxM[text_task.split_classes(corpus, task_name)[0]].ravel()
  if config.model.INPUT == "ngrams":
    idf_V = idf(corpus.ngram_ids_NxL[train_rows], task.num_buckets + 1)
    out = {"char3 tf-idf cosine": (bag_features(idf_V), "cosine")}
    if ablation:
      out["char3 counts euclidean"] = (bag_features(np.ones_like(idf_V)),
                                       "euclidean")
    return out
  vectors_VxD, found_V = load_vectors(corpus.vocab_V)
  idf_V = idf(corpus.word_ids_NxL[train_rows], len(corpus.vocab_V))
  out = {"glove idf in-vocab cosine": (
      glove_features(vectors_VxD, idf_V * found_V), "cosine")}
  if ablation:
    plain_V, found_V = np.ones(len(found_V)), found_V.astype(np.float64)
    for weight, weight_V in (("plain", plain_V), ("idf", idf_V)):
      for oov, keep_V in (("all tokens", plain_V), ("in-vocab", found_V)):
        for metric in ("euclidean", "cosine"):
          out.setdefault(f"glove {weight} {oov} {metric}", (
              glove_features(vectors_VxD, weight_V * keep_V), metric))
  return out


def main(argv):
  num_tasks, ablation, settings = 1000, "--ablation" in argv, SETTINGS
  for arg in argv:
    if arg.startswith("--num_tasks="):
      num_tasks = int(arg.split("=", 1)[1])
    elif arg.startswith("--task="):
      settings = [s for s in SETTINGS if s[0] == arg.split("=", 1)[1]]
      if not settings:
        raise SystemExit(f"--task: expected one of "
                         f"{sorted({s[0] for s in SETTINGS})}, got "
                         f"{arg.split('=', 1)[1]!r}")
  for task_name, ways in settings:
    for shots in (1, 5):
      for model in ("text_mean", "text_ngram"):
        config = text_config(task_name, shots=shots, algorithm="protonet",
                             ways=ways, overrides={
                                 "model": model, "eval.num_tasks": num_tasks})
        problem = text_task.build(config, PORTABLE)
        (setting, tasks), = problem.eval_tasks("test").items()
        for name, (features, metric) in variants(task_name, config,
                                                 ablation).items():
          summary = mean_and_interval(
              accuracy_per_task(tasks, features, ways, metric))
          print(f"{task_name} {setting} nearest mean, {name}: "
                f"{100 * summary['mean']:.1f} +- {100 * summary['ci95']:.1f} %",
                flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
