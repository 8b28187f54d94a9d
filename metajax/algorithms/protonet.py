"""Prototypical Networks (Snell, Swersky and Zemel, 2017): a metric baseline.

No inner loop: support and query inputs are embedded by the model's body,
each class's prototype is the mean of its support embeddings (labels
0..num_ways-1), and query logits are minus the squared Euclidean distances
to the prototypes; the meta-loss is the query cross-entropy. Evaluation is
query accuracy with no gradient adaptation.

Classification only: regression tasks (sine, linear) have no classes to make
prototypes of. The embedding is `problem.embed_fn(params, x)` when the
problem sets one, else the input of the model's head (`algorithm.head`, or
the last top-level submodule applied), so the head's own weights are
unused. Config: `algorithm.head`; the inner-loop fields are ignored.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.algorithms._direct import (
    direct_meta_grad, embedded_task, evaluate_directly, query_record)
from metajax.algorithms._partition import HeadConfig, find_head
from metajax.algorithms.base import Algorithm
from metajax.core.types import TaskBatch
from metajax.settings import ConfigError


@dataclasses.dataclass(frozen=True)
class ProtonetConfig(HeadConfig):
  """ProtoNets' `algorithm` section."""
  NAME = "protonet"


def check(config, problem):
  del config
  if problem.kind != "classification" and problem.embed_fn is None:
    raise ConfigError(
        f"config field 'algorithm': protonet is for classification tasks, "
        f"and this task is {problem.kind} (it has no classes to average into "
        "prototypes); use e.g. task='omniglot'")


def features_before_head(model, head: str):
  """`embed_fn(params, x)`: the input the top-level submodule `head` gets."""
  def intercept(next_fun, args, kwargs, context):
    if (getattr(context.module, "path", ()) == (head,)
        and context.method_name == "__call__"):
      return args[0]
    return next_fun(*args, **kwargs)

  def embed_fn(params, x):
    with nn.intercept_methods(intercept):
      return model.apply(params, x)

  return embed_fn


def embedding_fn(config, problem):
  if problem.embed_fn is not None:
    return problem.embed_fn
  return features_before_head(problem.model, find_head(config, problem))


def prototypes(embeddings_SxD, labels_S, num_ways: int):
  """Class means of the support embeddings, shape `(num_ways, D)`."""
  one_hot_SxN = jax.nn.one_hot(labels_S, num_ways, dtype=embeddings_SxD.dtype)
  counts_Nx1 = jnp.sum(one_hot_SxN, axis=0)[:, None]
  return (one_hot_SxN.T @ embeddings_SxD) / jnp.maximum(counts_Nx1, 1)


def prototype_logits(queries_QxD, prototypes_NxD):
  """Minus squared Euclidean distances, shape `(Q, N)`."""
  diff_QxNxD = queries_QxD[:, None, :] - prototypes_NxD[None, :, :]
  return -jnp.sum(jnp.square(diff_QxNxD), axis=-1)


def task_loss_and_metrics(params, task: TaskBatch, embed_fn, num_ways: int):
  """Query cross-entropy and accuracy of one task."""
  support_SxD, labels_S, query_QxD, labels_Q = embedded_task(
      embed_fn, params, task)
  logits_QxN = prototype_logits(query_QxD,
                                prototypes(support_SxD, labels_S, num_ways))
  return query_record(logits_QxN, labels_Q)


def make_meta_grad(config, problem):
  embed_fn = embedding_fn(config, problem)

  def objective(params, tasks, key):
    del key
    losses_T, metrics_T = jax.vmap(lambda t: task_loss_and_metrics(
        params, t, embed_fn, problem.num_classes))(tasks)
    return jnp.mean(losses_T), metrics_T

  return direct_meta_grad(objective)


def evaluate(config, problem, meta_params, split="test", num_tasks=None
             ) -> dict:
  """Query loss and accuracy (95% intervals) on the task's evaluation
  tasks, no adaptation."""
  embed_fn = embedding_fn(config, problem)
  return evaluate_directly(
      problem, lambda params, task: task_loss_and_metrics(
          params, task, embed_fn, problem.num_classes)[1],
      meta_params, split, num_tasks)


ALGORITHM = Algorithm(name="protonet", family="metric",
                      config_class=ProtonetConfig,
                      make_meta_grad=make_meta_grad, check=check,
                      evaluate=evaluate,
                      eval_optimizer=lambda config: "none (nearest prototype)")
