"""Few-shot regression: MAML's sine waves and the founding article's lines.

The task family is sampled inside the jitted meta-step (`regression_sampling`).
The meta-test protocol is the MAML paper's (section 5.1): for each K in
`task.eval_shots`, `eval.num_tasks` fixed tasks from `eval.seed`, K support
points, fine-tuned from the meta-learned initialisation with the algorithm's
test-time adaptation (MAML: its inner optimizer at `inner.lr`), query MSE on
`task.eval_query_points` fresh points after each of `eval.inner_steps`.
Validation during training (`eval.every`) scores tasks from a separate key
stream of `eval.seed`, never the meta-test tasks.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from metajax.backend import Formulations
from metajax.core import losses
from metajax.core.evaluation import adaptation_curves, summarize_curves
from metajax.models import configs as model_configs
from metajax.settings import (
    Section, interval, non_negative, positive_int, positive_ints, setting)
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.regression_sampling import (
    LinearTasks, SineTasks, sample_regression_tasks)


@dataclasses.dataclass(frozen=True)
class RegressionConfig(Section):
  """Settings every regression family shares."""
  support_points: int = setting(10, "support points per training task (K)",
                                check=positive_int)
  query_points: int = setting(10, "query points per training task",
                              check=positive_int)
  eval_shots: tuple[int, ...] = setting((5, 10), "K values evaluated",
                                        check=positive_ints)
  eval_query_points: int = setting(100, "query points per evaluation task",
                                   check=positive_int)
  x_range: tuple[float, ...] = setting((-5.0, 5.0), "inputs x ~ U[low, high]",
                                       check=interval)


@dataclasses.dataclass(frozen=True)
class SineConfig(RegressionConfig):
  """y = A sin(x - phase), the MAML paper's ranges."""
  NAME = "sine"
  amplitude_range: tuple[float, ...] = setting((0.1, 5.0), "A ~ U[low, high]",
                                               check=interval)
  phase_range: tuple[float, ...] = setting((0.0, math.pi),
                                           "phase ~ U[low, high]",
                                           check=interval)


@dataclasses.dataclass(frozen=True)
class LinearConfig(RegressionConfig):
  """y = slope x + intercept (+ noise), the founding article's example."""
  NAME = "linear"
  slope_range: tuple[float, ...] = setting((-3.0, 3.0), "slope ~ U[low, high]",
                                           check=interval)
  intercept_range: tuple[float, ...] = setting(
      (-3.0, 3.0), "intercept ~ U[low, high]", check=interval)
  noise_std: float = setting(0.0, "Gaussian noise on y", check=non_negative)


def family_of(task_config: RegressionConfig):
  """The task family (`SineTasks` or `LinearTasks`) of the section."""
  if isinstance(task_config, SineConfig):
    return SineTasks(amplitude_range=task_config.amplitude_range,
                     phase_range=task_config.phase_range,
                     x_range=task_config.x_range)
  return LinearTasks(slope_range=task_config.slope_range,
                     intercept_range=task_config.intercept_range,
                     x_range=task_config.x_range,
                     noise_std=task_config.noise_std)


# Validation tasks come from `eval.seed`'s key folded with this; the
# meta-test tasks from that key itself.
VALIDATION_STREAM = 1


def build(config, formulations: Formulations) -> Problem:
  """The regression `Problem` of `config.task` (sine or linear)."""
  task = config.task
  model_configs.require(config.model, ("mlp",), task.NAME)
  family = family_of(task)
  model = model_configs.build(config.model, 1, formulations)
  meta_batch_size = config.outer.meta_batch_size

  def train_sampler(key):
    tasks, _ = sample_regression_tasks(family, key, meta_batch_size,
                                       task.support_points, task.query_points)
    return tasks

  def eval_tasks(split="test", num_tasks=None):
    # Every split is the same family; validation tasks get a key of their
    # own, so what validation monitors never includes a meta-test task.
    if split not in ("test", "val"):
      raise ValueError("regression evaluation split must be one of "
                       f"['test', 'val'], got {split!r}")
    num_tasks = num_tasks or config.eval.num_tasks
    root = jax.random.key(config.eval.seed)
    if split == "val":
      root = jax.random.fold_in(root, VALIDATION_STREAM)
    sets = {}
    for shots in task.eval_shots:
      key = jax.random.fold_in(root, shots)
      sets[f"K={shots}"], _ = sample_regression_tasks(
          family, key, num_tasks, shots, task.eval_query_points)
    return sets

  def evaluate(params, inner, split="test", num_tasks=None):
    """Query MSE after each of `eval.inner_steps`, for each K."""
    steps = (0,) + tuple(config.eval.inner_steps)
    return {setting: summarize_curves(
        adaptation_curves(params, inner, tasks, max(steps)), steps)["loss"]
            for setting, tasks in eval_tasks(split, num_tasks).items()}

  def write_figures(params, inner, run_dir):
    from metajax.tasks import regression_plots  # pylint: disable=g-import-not-at-top
    regression_plots.plot_adaptation(
        params, family, model.apply, inner, f"{run_dir}/adaptation.png",
        seed=config.eval.seed, shots=min(task.eval_shots))

  return Problem(
      kind="regression", model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 1))),
      loss_fn=losses.mse_loss(model.apply), metric_fn=None,
      train_sampler=train_sampler, evaluate=evaluate, eval_tasks=eval_tasks,
      formulations=formulations, write_figures=write_figures)


SINE = TaskDomain(name="sine", config_class=SineConfig, build=build)
LINEAR = TaskDomain(name="linear", config_class=LinearConfig, build=build)
