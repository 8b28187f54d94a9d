"""The algorithm interface, the inner-loop settings every algorithm shares.

An algorithm is an `Algorithm` value: its name, its config section, the
function that builds its meta-gradient, and named optional hooks with
defaults that do what MAML does. The trainer calls exactly these; nothing
is looked up by attribute.

A meta-gradient function is `meta_grad_fn(params, tasks, key, step) ->
(grads, metrics)` (`metajax.core.meta_step.MetaGradFn`).
"""
import dataclasses
from typing import Any, Callable, Optional

import optax

from metajax.core.inner import differentiable_adam
from metajax.core.meta_step import MetaGradFn
from metajax.core.objective import InnerLoop
from metajax.settings import ConfigError, Section, positive, setting

PyTree = Any


@dataclasses.dataclass(frozen=True)
class InnerConfig(Section):
  """How a task is adapted (the `inner` section)."""
  steps: int = setting(1, "inner gradient steps in meta-training",
                       check=lambda v: None if v >= 1 else
                       "a positive integer")
  lr: float = setting(0.01, "inner learning rate (SGD, or Adam's)",
                      check=positive)
  optimizer: str = setting("sgd", "inner optimizer", choices=("sgd", "adam"))
  adam_b1: float = setting(0.9, "Adam's first-moment decay (Reptile's "
                           "paper: 0)", check=lambda v: None if 0 <= v < 1
                           else "a number in [0, 1)")
  first_order: bool = setting(False, "drop second-order terms (FOMAML)")
  remat: bool = setting(False, "rematerialise each inner step (memory)")


def no_settings(name: str) -> type:
  """An `algorithm` section called `name` with no fields of its own."""
  return dataclasses.make_dataclass(
      f"{name.capitalize()}Config", [], bases=(Section,), frozen=True,
      namespace={"NAME": name, "__doc__": f"{name}: no settings of its own."})


def inner_optimizer(config):
  """The optax inner optimizer `config.inner` names (None: plain SGD)."""
  if config.inner.optimizer == "adam":
    return differentiable_adam(config.inner.lr, b1=config.inner.adam_b1)
  return None


def explicit_inner_optimizer(config) -> optax.GradientTransformation:
  """`inner_optimizer(config)`, with plain SGD at `inner.lr` as an optax
  transformation too (for wrapping: proximal terms, partitions)."""
  return inner_optimizer(config) or optax.sgd(config.inner.lr)


def inner_loop(config, problem, **overrides) -> InnerLoop:
  """The `InnerLoop` that `config` and `problem` describe, `overrides` applied.

  The problem's formulations decide whether a second-order loop takes its
  first step outside the scan (`metajax.backend.Formulations`).
  """
  settings = dict(
      loss_fn=problem.loss_fn, num_steps=config.inner.steps,
      learning_rate=config.inner.lr, optimizer=inner_optimizer(config),
      first_order=config.inner.first_order, remat=config.inner.remat,
      metric_fn=problem.metric_fn, pre_metrics=config.run.pre_metrics,
      loss_and_metrics_fn=problem.loss_and_metrics_fn,
      first_step_outside_scan=problem.formulations.first_step_outside_scan)
  settings.update(overrides)
  return InnerLoop(**settings)


def require_default_inner(config, name: str):
  """ConfigError naming the first `inner.*` field that differs from
  `InnerConfig`'s default: an algorithm with no inner loop (metric and
  model-based ones) would silently ignore it."""
  defaults = InnerConfig()
  for field in dataclasses.fields(InnerConfig):
    value = getattr(config.inner, field.name)
    default = getattr(defaults, field.name)
    if value != default:
      raise ConfigError(
          f"config field 'inner.{field.name}': {name} has no inner loop, so "
          f"it takes no inner-loop settings; expected the default "
          f"{default!r}, got {value!r}")


def no_check(config, problem) -> None:
  del config, problem


def keep_params(config, problem, params: PyTree) -> PyTree:
  del config, problem
  return params


def configured_eval_adaptation(config, problem, meta_params):
  """MAML's test-time adaptation: the inner loop from the meta-parameters,
  with the inner optimizer it was meta-trained with (`inner.optimizer`)."""
  return meta_params, inner_loop(config, problem)


def configured_eval_optimizer(config) -> str:
  inner = config.inner
  name = inner.optimizer
  if name == "adam" and inner.adam_b1 != InnerConfig.adam_b1:
    name = f"adam (b1={inner.adam_b1})"
  return f"{name} at inner.lr={inner.lr}"


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """A meta-learning algorithm.

  Attributes:
    name: the config name (`--algorithm=NAME`).
    family: "optimization", "metric" or "model" based.
    config_class: its `algorithm` section (a `Section` with `NAME`).
    make_meta_grad: `fn(config, problem) -> meta_grad_fn`.
    check: `fn(config, problem)`, raises `ConfigError` for settings or
      problems the algorithm cannot take; called before anything compiles.
    init_meta_params: `fn(config, problem, model_params) -> meta_params`,
      for meta-parameters beyond the model's (learned rates, a metric or
      model-based learner's own network).
    eval_adaptation: `fn(config, problem, meta_params) -> (init_params,
      InnerLoop)`, how a meta-test task is adapted; the task's evaluation
      protocol then scores it. The default adapts with the configured inner
      optimizer, as in meta-training.
    eval_optimizer: `fn(config) -> str`, what `eval_adaptation` adapts with,
      recorded in results.json ("adam at inner.lr=0.001").
    evaluate: optional `fn(config, problem, meta_params, split, num_tasks)
      -> dict`, a whole evaluation of its own (algorithms with no inner
      loop); None: the task's protocol with `eval_adaptation`.
    uses_forward_mode: the meta-gradient takes `jax.jvp` through the model,
      so formulations without forward-mode rules are not selected.
  """
  name: str
  family: str
  config_class: type
  make_meta_grad: Callable[[Any, Any], MetaGradFn]
  check: Callable[[Any, Any], None] = no_check
  init_meta_params: Callable[[Any, Any, PyTree], PyTree] = keep_params
  eval_adaptation: Callable[[Any, Any, PyTree], tuple] = (
      configured_eval_adaptation)
  eval_optimizer: Callable[[Any], str] = configured_eval_optimizer
  evaluate: Optional[Callable[..., dict]] = None
  uses_forward_mode: bool = False

  def __post_init__(self):
    if self.family not in ("optimization", "metric", "model"):
      raise ValueError(f"Algorithm {self.name!r}: family must be "
                       f"'optimization', 'metric' or 'model', got "
                       f"{self.family!r}")
    if getattr(self.config_class, "NAME", None) != self.name:
      raise ValueError(f"Algorithm {self.name!r}: its config_class must set "
                       f"NAME = {self.name!r}")
