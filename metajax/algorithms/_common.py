"""Helpers shared by the algorithm modules."""
from metajax.core.inner import differentiable_adam
from metajax.training.config import Config
from metajax.core.objective import InnerLoop


def inner_optimizer(config: Config):
  """The optax inner optimizer named by the config (None means plain SGD)."""
  if config.inner_optimizer == "adam":
    return differentiable_adam(config.inner_lr)
  return None


def inner_loop(config: Config, problem, **overrides) -> InnerLoop:
  """The `InnerLoop` a config describes, with `overrides` applied."""
  settings = dict(
      loss_fn=problem.loss_fn, num_steps=config.inner_steps,
      learning_rate=config.inner_lr, optimizer=inner_optimizer(config),
      first_order=config.first_order, remat=config.remat,
      metric_fn=problem.metric_fn, pre_metrics=config.pre_metrics,
      loss_and_metrics_fn=problem.loss_and_metrics_fn)
  settings.update(overrides)
  return InnerLoop(**settings)
