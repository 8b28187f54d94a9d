"""The "navigation" task domain: MAML-RL's 2D point navigation.

A meta-batch is a `TaskBatch` whose support and query both hold the goals
`(meta_batch, 2)`; the algorithm (`maml_rl`) rolls the policy out inside
the meta-gradient through `Problem.environment`. The policy is the Gaussian
MLP of the `model` section's hidden sizes and activation (the paper: 2 x
100 ReLU). Meta-test goals are `eval.num_tasks` goals from `eval.seed`
(the paper: 40); validation goals come from a separate stream.
"""
import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from metajax.backend import Formulations
from metajax.core.types import TaskBatch
from metajax.models import configs as model_configs
from metajax.models.policy import GaussianMLPPolicy
from metajax.settings import (
    ConfigError, Section, interval, positive, positive_int, setting)
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.rl.navigation import Navigation, rollout

VALIDATION_STREAM = 1
NUM_BASELINE_FEATURES = 2 * 2 + 4  # o, o^2, t, t^2, t^3, 1 (linear baseline)


@dataclasses.dataclass(frozen=True)
class NavigationConfig(Section):
  """cbfinn/maml_rl's `point_env_randgoal` (the MAML paper, section 5.3)."""
  NAME = "navigation"
  horizon: int = setting(100, "steps per episode", check=positive_int)
  goal_range: tuple[float, ...] = setting((-0.5, 0.5), "goal coordinates ~ "
                                          "U[low, high]", check=interval)
  max_action: float = setting(0.1, "actions clipped to +-this",
                              check=positive)
  success_radius: float = setting(0.01, "done when both coordinates are "
                                  "this close to the goal", check=positive)

  def check(self):
    if self.horizon > 10_000:
      raise ConfigError(f"config field 'task.horizon': expected at most "
                        f"10000 steps, got {self.horizon}")


class Environment(NamedTuple):
  """What an RL algorithm needs of a task: `rollout(params, task_params,
  key, num_trajectories) -> Trajectories`, and the episode length."""
  rollout: Callable
  horizon: int


def _unsupervised(*args, **kwargs):
  del args, kwargs
  raise ConfigError("config field 'algorithm': task 'navigation' is a "
                    "reinforcement-learning task; use --algorithm=maml_rl")


def build(config, formulations: Formulations) -> Problem:
  """The navigation `Problem` of `config`."""
  task = config.task
  if config.algorithm.NAME != "maml_rl":
    _unsupervised()
  model_configs.require(config.model, ("mlp",), task.NAME)
  settings = config.algorithm
  if settings.trajectories * task.horizon < NUM_BASELINE_FEATURES:
    raise ConfigError(
        f"config field 'algorithm.trajectories': {settings.trajectories} "
        f"trajectories of task.horizon={task.horizon} steps give fewer than "
        f"the {NUM_BASELINE_FEATURES} samples the linear baseline fits; "
        "raise either")
  env = Navigation(horizon=task.horizon, max_action=task.max_action,
                   success_radius=task.success_radius,
                   goal_low=task.goal_range[0], goal_high=task.goal_range[1])
  model = GaussianMLPPolicy(action_dim=env.action_dim,
                            hidden_sizes=tuple(config.model.hidden_sizes),
                            activation=config.model.activation)
  meta_batch_size = config.outer.meta_batch_size

  def train_sampler(key):
    goals_Tx2 = env.sample_goals(key, meta_batch_size)
    return TaskBatch(support=goals_Tx2, query=goals_Tx2)

  def eval_tasks(split="test", num_tasks=None):
    if split not in ("test", "val"):
      raise ValueError("navigation evaluation split must be one of "
                       f"['test', 'val'], got {split!r}")
    num_tasks = num_tasks or config.eval.num_tasks
    key = jax.random.key(config.eval.seed)
    if split == "val":
      key = jax.random.fold_in(key, VALIDATION_STREAM)
    goals = env.sample_goals(key, num_tasks)
    return {f"{num_tasks} goals": TaskBatch(support=goals, query=goals)}

  def environment_rollout(params, goal_2, key, num_trajectories):
    return rollout(env, model.apply, params, goal_2, key, num_trajectories)

  return Problem(
      kind="reinforcement", model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 2))),
      loss_fn=_unsupervised, metric_fn=None, train_sampler=train_sampler,
      evaluate=_unsupervised, eval_tasks=eval_tasks,
      formulations=formulations,
      environment=Environment(rollout=environment_rollout,
                              horizon=env.horizon))


NAVIGATION = TaskDomain(name="navigation", config_class=NavigationConfig,
                        build=build)
