"""What a task domain gives the rest of metajax: a `Problem`.

A domain (`metajax.tasks.regression`, `metajax.tasks.omniglot.task`, ...)
declares its config section and builds, from a run's config, the model, the
per-task losses, the in-jit task sampler and its own evaluation protocol.
The algorithms and the trainer see only this interface.
"""
import dataclasses
from typing import Any, Callable, Optional

from metajax.backend import PORTABLE, Formulations
from metajax.settings import (
    Section, non_negative_int, positive_int, positive_ints, setting)


@dataclasses.dataclass(frozen=True)
class EvalConfig(Section):
  """The meta-test protocol's shared settings (the `eval` section)."""
  num_tasks: int = setting(600, "meta-test tasks", check=positive_int)
  seed: int = setting(1234, "seed of the fixed meta-test tasks (independent "
                      "of run.seed)")
  inner_steps: tuple[int, ...] = setting(
      (1, 5, 10), "inner steps after which the query is scored",
      check=positive_ints)
  every: int = setting(0, "validate every N meta-steps (0: never)",
                       check=non_negative_int)
  line_search: bool = setting(
      False, "backtracking line search on the support loss at test time "
      "(steps never raise it; false: the paper's fixed-rate steps)")


@dataclasses.dataclass(frozen=True)
class Problem:
  """Everything task-specific a run needs.

  Attributes:
    kind: "regression" or "classification" (algorithms check what they
      can take; nothing else branches on it).
    model: the Flax module.
    init_params: `fn(key) -> params`.
    loss_fn: per-task `loss_fn(params, batch) -> scalar`.
    metric_fn: optional per-task `fn(params, batch) -> dict`.
    loss_and_metrics_fn: optional per-task `fn(params, batch) -> (loss,
      metrics)`, both from one forward pass (see `InnerLoop`).
    train_sampler: `fn(key) -> TaskBatch` of a meta-batch, run in the step.
    evaluate: `fn(params, inner, split="test", num_tasks=None) -> dict`, the
      domain's meta-test protocol: adapt each fixed evaluation task with the
      `InnerLoop` `inner` from `params` and score its query set.
    eval_tasks: `fn(split, num_tasks=None) -> {setting: TaskBatch}`, the
      fixed evaluation tasks `evaluate` uses (for algorithms that score
      them their own way).
    formulations: the resolved formulations the model was built with.
    num_classes: classes per task (classification), else None.
    embed_fn: optional `fn(params, x) -> features`, the body's embedding
      (metric-based algorithms); None: the input of the model's head.
    write_figures: optional `fn(params, inner, run_dir)`, the domain's
      figures of a trained model (the sine adaptation plot).
    environment: optional, reinforcement-learning tasks only: what the RL
      algorithm rolls out (`metajax.tasks.rl.task.Environment`); None else.
  """
  kind: str
  model: Any
  init_params: Callable
  loss_fn: Callable
  metric_fn: Optional[Callable]
  train_sampler: Callable
  evaluate: Callable[..., dict]
  eval_tasks: Callable[..., dict]
  formulations: Formulations = PORTABLE
  loss_and_metrics_fn: Optional[Callable] = None
  num_classes: Optional[int] = None
  embed_fn: Optional[Callable] = None
  write_figures: Optional[Callable] = None
  environment: Optional[Any] = None


@dataclasses.dataclass(frozen=True)
class TaskDomain:
  """A task domain: its name, config section and `build(config, formulations)
  -> Problem` (raises `ConfigError` before anything compiles)."""
  name: str
  config_class: type
  build: Callable[[Any, Formulations], Problem]
