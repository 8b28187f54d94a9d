"""A `Problem` bundles what a config's task needs: model, losses, samplers.

The trainer and the algorithms only see this interface, so a new task family
is one new builder function here (or in its own module).
"""
import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from metajax import algorithms
from metajax.core import losses
from metajax.training.config import Config
from metajax.models import MLP
from metajax.models.kernels import dense_ops
from metajax.tasks.regression_sampling import (
    LinearTasks, SineTasks, sample_regression_tasks)


@dataclasses.dataclass(frozen=True)
class Problem:
  """Everything task-specific a run needs.

  Attributes:
    model: the Flax module.
    init_params: `fn(key) -> params`.
    loss_fn: per-task `loss_fn(params, batch) -> scalar`.
    metric_fn: optional per-task `fn(params, batch) -> dict`.
    loss_and_metrics_fn: optional per-task `fn(params, batch) -> (loss,
      metrics)`, both from one forward pass (see `InnerLoop`).
    train_sampler: `fn(key) -> TaskBatch` of `meta_batch_size` tasks.
    family: the regression task family (None for classification).
    classification: whether accuracy is the headline metric.
    embed_fn: optional `fn(params, x) -> features`, the body's embedding of
      inputs (metric-based algorithms such as ProtoNets). When None,
      `metajax.algorithms.protonet` uses the input of the model's head.
  """
  model: Any
  init_params: Callable
  loss_fn: Callable
  metric_fn: Optional[Callable]
  train_sampler: Callable
  family: Any = None
  classification: bool = False
  data: Any = None
  embed_fn: Optional[Callable] = None
  loss_and_metrics_fn: Optional[Callable] = None


def regression_family(config: Config):
  if config.task == "sine":
    return SineTasks(amplitude_range=config.amplitude_range,
                     phase_range=config.phase_range, x_range=config.x_range)
  return LinearTasks(slope_range=config.slope_range,
                     intercept_range=config.intercept_range,
                     x_range=config.x_range, noise_std=config.noise_std)


def mlp_dense(config: Config) -> str:
  """The MLP product `config.dense` stands for under `config.algorithm`."""
  algorithm = algorithms.get_algorithm(config.algorithm)
  forward_mode = getattr(algorithm, "USES_FORWARD_MODE", False)
  return dense_ops.resolve_name(config.dense, forward_mode=forward_mode)


def build_regression(config: Config) -> Problem:
  family = regression_family(config)
  model = MLP(hidden_sizes=config.hidden_sizes, output_size=1,
              activation=config.activation,
              init_stddev=config.init_stddev or None,
              dense=mlp_dense(config))

  def train_sampler(key):
    tasks, _ = sample_regression_tasks(family, key, config.meta_batch_size,
                                       config.num_support, config.num_query)
    return tasks

  return Problem(
      model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 1))),
      loss_fn=losses.mse_loss(model.apply), metric_fn=None,
      train_sampler=train_sampler, family=family)


def build_problem(config: Config) -> Problem:
  """The `Problem` for `config.task`."""
  if config.task in ("sine", "linear"):
    return build_regression(config)
  if config.task == "omniglot":
    from metajax.tasks.omniglot.task import build_omniglot  # pylint: disable=g-import-not-at-top
    return build_omniglot(config)
  raise ValueError(f"config field 'task': unknown task {config.task!r}")
