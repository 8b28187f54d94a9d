"""SNAIL (Mishra et al. 2018): few-shot classification as sequence learning.

Model-based, no inner loop: a task is read in a forward pass. The model's
body (the input of its head, as for `protonet`) embeds every image; each
query gets its own sequence, the support's (embedding, one-hot label)
pairs followed by (query embedding, zeros), and a causal sequence learner
(`metajax.models.sequence`, `algorithm.backbone`) predicts the query's
class at the last position. The meta-loss is the query cross-entropy.

The task samplers emit the support class by class, so a sequence learner
would find the labels from positions alone: each task's support is
permuted with a key drawn from the meta-step's key (in evaluation, from
`eval.seed`). Batch norm in the body sees the support and the queries as
two batches, as in `protonet`.

Meta-parameters are `{"body": model params without the head, "sequence":
the sequence learner's}`. Config: `algorithm.backbone`, `max_length`,
`head` and the backbone's sizes; the `inner` section must keep its
defaults (there is no inner loop). Classification only.
"""
import dataclasses

import jax
import jax.numpy as jnp

from metajax.algorithms._direct import (
    direct_meta_grad, embedded_task, evaluate_directly, query_record)
from metajax.algorithms._partition import HeadConfig, _applied_order
from metajax.algorithms.base import Algorithm, require_default_inner
from metajax.algorithms.protonet import features_before_head
from metajax.models.sequence import BACKBONES
from metajax.settings import ConfigError, positive_int, setting

SEQUENCE_INIT_STREAM = 1  # `fold_in(key(run.seed), this)` inits the learner


def _even_sizes(values):
  ok = len(values) > 0 and all(v >= 2 and v % 2 == 0 for v in values)
  return None if ok else "one or more even integers >= 2"


@dataclasses.dataclass(frozen=True)
class SnailConfig(HeadConfig):
  """SNAIL's `algorithm` section (sizes: the paper's Omniglot network)."""
  NAME = "snail"
  backbone: str = setting("snail", "the causal sequence learner",
                          choices=tuple(BACKBONES))
  max_length: int = setting(6, "longest sequence the learner is built for "
                            "(at least ways * shots + 1)",
                            check=lambda v: None if v >= 2 else
                            "an integer >= 2")
  tc_filters: int = setting(128, "snail: filters of each TC dense block",
                            check=positive_int)
  attention_sizes: tuple[int, ...] = setting(
      (64, 256, 512), "snail: key size of each attention block (values: "
      "half), a TC block between consecutive ones", check=_even_sizes)
  lstm_size: int = setting(200, "lstm: hidden units", check=positive_int)


def sequence_learner(config, num_classes: int):
  """The Flax sequence learner `config.algorithm` describes."""
  settings = config.algorithm
  if settings.backbone == "snail":
    return BACKBONES["snail"](num_classes, settings.max_length,
                              tc_filters=settings.tc_filters,
                              attention_sizes=settings.attention_sizes)
  return BACKBONES["lstm"](num_classes, settings.max_length,
                           hidden_size=settings.lstm_size)


def _head_name(config, model_params) -> str:
  """`algorithm.head`, else the last submodule created (`check` makes sure
  it is also the last one applied)."""
  return config.algorithm.head or list(model_params["params"])[-1]


def _check_head(config, problem, params):
  """ConfigError unless the head exists, is the last submodule applied
  (when not named) and is dense; all on abstract values, nothing runs."""
  head, modules = _head_name(config, params), list(params["params"])
  if head not in modules:
    raise ConfigError(f"config field 'algorithm.head': {head!r} is not a "
                      f"top-level submodule; expected one of {modules}")
  x = jax.eval_shape(problem.train_sampler, jax.random.key(0)).support[0]
  one_task_x = jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
  applied = [name for name in _applied_order(problem.model, params, one_task_x)
             if name in modules]
  if not config.algorithm.head and applied and applied[-1] != head:
    raise ConfigError(
        f"config field 'algorithm.head': the last submodule applied, "
        f"{applied[-1]!r}, is not the last created; set algorithm.head="
        f"{applied[-1]} explicitly")
  kernel = params["params"][head].get("kernel")
  if (problem.embed_fn is not None or kernel is None or len(kernel.shape) != 2
      or kernel.shape[1] != problem.num_classes):
    raise ConfigError(
        f"config field 'algorithm.head' ({head!r}): snail embeds with the "
        "input of a dense head of one output per class and reads the "
        "embedding size from its kernel")


def check(config, problem):
  """Classification only, no inner-loop settings, sequences that fit, a
  dense head."""
  if problem.kind != "classification" or problem.num_classes is None:
    raise ConfigError(
        f"config field 'algorithm': snail is for classification tasks, and "
        f"this task is {problem.kind} (its sequences pair inputs with class "
        "labels); use e.g. task='omniglot'")
  require_default_inner(config, f"snail (its {config.algorithm.backbone} "
                        "reads the support set in its forward pass)")
  support = jax.eval_shape(problem.train_sampler, jax.random.key(0)).support
  length = support[1].shape[-1] + 1
  if length > config.algorithm.max_length:
    raise ConfigError(
        f"config field 'algorithm.max_length' ({config.algorithm.max_length}"
        f"): this task's sequences have {length} steps ({length - 1} support "
        f"pairs and the query); expected algorithm.max_length >= {length}")
  _check_head(config, problem,
              jax.eval_shape(problem.init_params, jax.random.key(0)))


def init_meta_params(config, problem, model_params):
  """`{"body": model params less the head, "sequence": learner params}`."""
  del problem
  head = _head_name(config, model_params)
  embedding_size, num_classes = model_params["params"][head]["kernel"].shape
  learner = sequence_learner(config, num_classes)
  key = jax.random.fold_in(jax.random.key(config.run.seed),
                           SEQUENCE_INIT_STREAM)
  example = jnp.zeros((1, 2, embedding_size + num_classes))
  body = {"params": {k: v for k, v in model_params["params"].items()
                     if k != head}}
  return {"body": body, "sequence": learner.init(key, example)}


def query_sequences(support_SxE, labels_S, query_QxE, num_classes: int):
  """Each query's sequence: the support pairs, then (query, zeros);
  `[Q, S + 1, E + N]`."""
  num_query = query_QxE.shape[0]
  support_SxI = jnp.concatenate(
      [support_SxE, jax.nn.one_hot(labels_S, num_classes,
                                   dtype=support_SxE.dtype)], axis=-1)
  query_QxI = jnp.concatenate(
      [query_QxE, jnp.zeros((num_query, num_classes), query_QxE.dtype)],
      axis=-1)
  shared_QxSxI = jnp.broadcast_to(support_SxI[None],
                                  (num_query,) + support_SxI.shape)
  return jnp.concatenate([shared_QxSxI, query_QxI[:, None]], axis=1)


def make_task_fns(config, problem):
  """`(task_logits, task_loss_and_metrics)` of ONE task; both take
  `(meta_params, task, key)`, the key permuting the support."""
  head = _head_name(config, jax.eval_shape(problem.init_params,
                                           jax.random.key(0)))
  embed_fn = features_before_head(problem.model, head)
  learner = sequence_learner(config, problem.num_classes)

  def task_logits(meta_params, task, key):
    support_SxE, labels_S, query_QxE, _ = embedded_task(
        embed_fn, meta_params["body"], task)
    order_S = jax.random.permutation(key, labels_S.shape[0])
    sequences_QxTxI = query_sequences(support_SxE[order_S], labels_S[order_S],
                                      query_QxE, problem.num_classes)
    return learner.apply(meta_params["sequence"], sequences_QxTxI)[:, -1]

  def task_loss_and_metrics(meta_params, task, key):
    return query_record(task_logits(meta_params, task, key), task.query[1])

  return task_logits, task_loss_and_metrics


def task_keys(key, tasks):
  """One support-permutation key per task of the meta-batch `tasks`."""
  return jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])


def make_meta_grad(config, problem):
  """`meta_grad_fn(meta_params, tasks, key, step)`: the gradient of the mean
  query cross-entropy, vmapped over tasks, each task's support permuted by
  its own key from `key`."""
  _, task_loss_and_metrics = make_task_fns(config, problem)

  def objective(meta_params, tasks, key):
    losses_T, metrics_T = jax.vmap(task_loss_and_metrics, in_axes=(None, 0, 0))(
        meta_params, tasks, task_keys(key, tasks))
    return jnp.mean(losses_T), metrics_T

  return direct_meta_grad(objective)


def evaluate(config, problem, meta_params, split="test", num_tasks=None
             ) -> dict:
  """Query loss and accuracy (95% intervals) on the task's evaluation
  tasks, each support permuted with a key from `eval.seed`."""
  _, task_loss_and_metrics = make_task_fns(config, problem)
  return evaluate_directly(
      problem, lambda params, task, key: task_loss_and_metrics(
          params, task, key)[1],
      meta_params, split, num_tasks, key=jax.random.key(config.eval.seed))


def eval_optimizer(config) -> str:
  """What adapts at test time, for results.json: nothing."""
  return f"none (the {config.algorithm.backbone} reads the support set)"


ALGORITHM = Algorithm(name="snail", family="model", config_class=SnailConfig,
                      make_meta_grad=make_meta_grad, check=check,
                      init_meta_params=init_meta_params, evaluate=evaluate,
                      eval_optimizer=eval_optimizer)
