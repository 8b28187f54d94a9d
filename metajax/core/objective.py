"""The MAML meta-objective: adapt on support, score on query, vmap over tasks.

The per-task function is written for ONE task; `meta_objective` vmaps it over
the leading task axis of a `TaskBatch` and averages. Nothing here loops over
tasks in Python, and nothing here assumes one device: the task axis can be
sharded.
"""
import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from metajax.core.inner import adapt, check_inner_settings
from metajax.core.types import TaskBatch

PyTree = Any


@dataclasses.dataclass(frozen=True)
class InnerLoop:
  """How one task is adapted (frozen, so it can be closed over safely).

  Attributes:
    loss_fn: `loss_fn(params, batch) -> scalar` for one task.
    num_steps: inner gradient steps (>= 0).
    learning_rate: SGD rate used when `optimizer` is None.
    optimizer: optional optax inner optimizer.
    first_order: drop second-order terms (FOMAML).
    remat: rematerialise each inner step.
    metric_fn: optional `fn(params, batch) -> dict` of extra per-task metrics
      (e.g. accuracy), reported before and after adaptation on the query set.
    unroll: the inner scan's unroll factor (True: fully unrolled).
    pre_metrics: also report the query metrics before adaptation (`pre_*`).
      They cost one more forward pass of the query set per task (logging
      only); benchmarks turn them off.
    loss_and_metrics_fn: optional `fn(params, batch) -> (loss, metrics)`,
      `loss_fn` and `metric_fn` from one forward pass
      (`losses.cross_entropy_and_accuracy`); the query set is scored with it
      when given. With two functions XLA may run the model twice.
    first_step_outside_scan: second-order loops apply their first step
      before the scan (`adapt`; the same results, a formulation chosen by
      `metajax.backend.for_backend`). First-order runs ignore it.
  """
  loss_fn: Callable
  num_steps: int = 1
  learning_rate: float = 0.01
  optimizer: Optional[optax.GradientTransformation] = None
  first_order: bool = False
  remat: bool = False
  metric_fn: Optional[Callable] = None
  unroll: int | bool = 1
  pre_metrics: bool = True
  loss_and_metrics_fn: Optional[Callable] = None
  first_step_outside_scan: bool = False

  def __post_init__(self):
    check_inner_settings(self.num_steps, self.learning_rate)

  def run(self, params, support, **overrides):
    """`adapt(params, loss_fn, support, ...)` with this loop's settings."""
    settings = dict(
        num_steps=self.num_steps, learning_rate=self.learning_rate,
        inner_optimizer=self.optimizer, first_order=self.first_order,
        remat=self.remat, unroll=self.unroll)
    settings.update(overrides)
    settings.setdefault("first_step_outside_scan",
                        self.first_step_outside_scan
                        and not settings["first_order"])
    return adapt(params, self.loss_fn, support, **settings)


def query_metrics(inner: InnerLoop, params, query, prefix: str) -> dict:
  """The query loss (and extra metrics) of `params`, keys prefixed."""
  if inner.loss_and_metrics_fn is not None:
    loss, extra = inner.loss_and_metrics_fn(params, query)
  else:
    loss = inner.loss_fn(params, query)
    extra = {} if inner.metric_fn is None else inner.metric_fn(params, query)
  metrics = {f"{prefix}loss": loss}
  for name, value in extra.items():
    metrics[f"{prefix}{name}"] = value
  return metrics


def maml_task_loss(params, task: TaskBatch, inner: InnerLoop, **overrides):
  """Post-adaptation query loss of one task, and its metrics.

  Returns:
    `(query_loss, metrics)` where metrics holds `pre_loss`/`post_loss`
    (query loss before/after adaptation; `pre_*` only under
    `inner.pre_metrics`), `support_loss_start`, and
    `pre_accuracy`/`post_accuracy` when `inner.metric_fn` gives accuracy.
  """
  result = inner.run(params, task.support, **overrides)
  post = query_metrics(inner, result.params, task.query, "post_")
  metrics = dict(post)
  if inner.pre_metrics:
    metrics.update(query_metrics(inner, jax.lax.stop_gradient(params),
                                 task.query, "pre_"))
  if result.losses.shape[0] > 0:
    metrics["support_loss_start"] = result.losses[0]
  return post["post_loss"], jax.tree.map(jax.lax.stop_gradient, metrics)


def _leaf_shapes(tree, split: str) -> list:
  """`[(name, shape)]` of the leaves of one split, named like `support[0]`."""
  return [(f"{split}{jax.tree_util.keystr(path)}", tuple(jnp.shape(leaf)))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def check_task_batch(tasks: TaskBatch):
  """Raises ValueError unless `tasks` is a well-formed batch of tasks.

  Every leaf must be `(tasks, examples, ...)` with one task count, one
  example count per split, and support and query examples of the same
  shapes. The messages name the offending field and its shape: these are
  the shape errors a caller can make without any fault in the loss, so they
  are caught here, before the loss is traced.
  """
  if not isinstance(tasks, TaskBatch):
    raise TypeError(f"tasks must be a metajax.TaskBatch, got {type(tasks)}")
  if jax.tree.structure(tasks.support) != jax.tree.structure(tasks.query):
    raise ValueError("support and query must have the same structure, got "
                     f"{jax.tree.structure(tasks.support)} and "
                     f"{jax.tree.structure(tasks.query)}")
  support = _leaf_shapes(tasks.support, "support")
  query = _leaf_shapes(tasks.query, "query")
  if not support:
    raise ValueError("a task batch needs arrays in support and query, got "
                     f"{tasks}")
  for name, shape in support + query:
    if len(shape) < 2:
      raise ValueError(f"task batch field {name} has shape {shape}; every "
                       "leaf needs shape (tasks, examples, ...)")
  sizes = {name: shape[0] for name, shape in support + query}
  if len(set(sizes.values())) > 1:
    raise ValueError(
        "support and query must share the leading task axis; got task-axis "
        f"sizes {sizes}")
  for split in (support, query):
    examples = {name: shape[1] for name, shape in split}
    if len(set(examples.values())) > 1:
      raise ValueError(
          "the leaves of one split must share the example axis (axis 1); got "
          f"example counts {examples}")
  for (s_name, s_shape), (q_name, q_shape) in zip(support, query):
    if s_shape[2:] != q_shape[2:]:
      raise ValueError(
          f"task batch fields {s_name} and {q_name} must have the same "
          "per-example shape (after the task and example axes); got shapes "
          f"{s_shape} and {q_shape}")


def meta_objective(params, tasks: TaskBatch, inner: InnerLoop,
                   task_loss: Callable = maml_task_loss):
  """Mean post-adaptation query loss over a batch of tasks.

  Args:
    params: meta-parameters.
    tasks: a `TaskBatch` whose leaves share a leading task axis.
    inner: the `InnerLoop` settings.
    task_loss: per-task `fn(params, task, inner) -> (loss, metrics)`.

  Returns:
    `(mean_loss, metrics)` with every metric of shape `(num_tasks,)`.

  Raises:
    ValueError: (at trace time, before the loss is traced) if the task batch
      is malformed (`check_task_batch`), naming the field and its shape.
    Any exception of `task_loss` itself, unchanged, with a note giving the
    task batch's shapes.
  """
  check_task_batch(tasks)
  try:
    losses_T, metrics_T = jax.vmap(
        lambda task: task_loss(params, task, inner))(tasks)
  except Exception as e:  # pylint: disable=broad-except
    # The loss's own error propagates unchanged (a KeyError stays a
    # KeyError); the note adds the batch's shapes, the usual culprit once
    # `check_task_batch` has passed (inputs the model was not built for).
    shapes = jax.tree.map(jnp.shape, tasks)
    e.add_note("raised by the per-task loss, vmapped over the leading task "
               f"axis of a task batch with shapes {shapes}")
    raise
  return jnp.mean(losses_T), metrics_T
