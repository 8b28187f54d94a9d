"""What the algorithms with no inner loop share: ProtoNets, Matching
Networks, the neural processes and SNAIL read the support set in their
forward pass and score the query directly.

Each writes its per-task loss; these two functions turn it into the
meta-gradient the trainer steps with and into the evaluation record.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from metajax import backend
from metajax.core.evaluation import summarize_curves
from metajax.core.losses import logits_cross_entropy_and_accuracy

CLASSIFICATION_CURVES = {"loss": "post_loss", "accuracy": "post_accuracy"}


def embedded_task(embed_fn, params, task):
  """`(support_SxD, labels_S, query_QxD, labels_Q)`: ONE classification
  task's inputs embedded by `embed_fn(params, x)` and flattened."""
  (x_support, labels_S), (x_query, labels_Q) = task.support, task.query
  flat = lambda e: e.reshape((e.shape[0], -1))
  return (flat(embed_fn(params, x_support)), labels_S,
          flat(embed_fn(params, x_query)), labels_Q)


def query_record(logits_QxN, labels_Q):
  """`(loss, {"post_loss", "post_accuracy"})` of a task's query logits."""
  loss, accuracy = logits_cross_entropy_and_accuracy(logits_QxN, labels_Q)
  return loss, {"post_loss": loss, "post_accuracy": accuracy}


def direct_meta_grad(objective: Callable):
  """`meta_grad_fn(params, tasks, key, step)` from `objective(params, tasks,
  key) -> (mean loss, per-task metrics)`: its gradient, and the metrics
  averaged over the tasks, with the loss as `meta_loss`."""
  def meta_grad_fn(params, tasks, key, step):
    del step
    (loss, metrics_T), grads = jax.value_and_grad(objective, has_aux=True)(
        params, tasks, key)
    metrics = jax.tree.map(lambda m: jnp.mean(jax.lax.stop_gradient(m)),
                           metrics_T)
    metrics["meta_loss"] = loss
    return grads, metrics
  return meta_grad_fn


def evaluate_directly(problem, task_metrics: Callable, params, split: str,
                      num_tasks, key=None, curves: dict = None) -> dict:
  """Each of the problem's evaluation tasks scored with no adaptation.

  Args:
    problem: the task's `Problem` (its `eval_tasks`).
    task_metrics: `fn(params, task) -> metrics` of ONE task, or
      `fn(params, task, key)` when `key` is given.
    params: the meta-parameters.
    split: "test" or "val".
    num_tasks: how many tasks (None: the config's).
    key: optional; task i gets `jax.random.split(key, num_tasks)[i]`.
    curves: reported name -> metrics key (default: loss and accuracy).

  Returns:
    `{setting: {name: {"step_0": summary}}}`, as the task protocols give.
  """
  curves = curves or CLASSIFICATION_CURVES

  def score(params, tasks):
    if key is None:
      return jax.lax.map(lambda task: task_metrics(params, task), tasks,
                         batch_size=50)
    keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
    return jax.lax.map(lambda task_and_key: task_metrics(
        params, *task_and_key), (tasks, keys), batch_size=50)

  score = jax.jit(score, compiler_options=backend.compiler_options())
  results = {}
  for setting, tasks in problem.eval_tasks(split, num_tasks).items():
    metrics = score(params, tasks)
    results[setting] = summarize_curves(
        {name: metrics[name_in_metrics][:, None]
         for name, name_in_metrics in curves.items()}, (0,))
  return results
