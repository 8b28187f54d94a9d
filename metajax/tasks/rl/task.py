"""The "navigation" task domain: MAML-RL's 2D point navigation.

A meta-batch is a `TaskBatch` whose support and query both hold the goals
`(meta_batch, 2)`; the algorithm (`maml_rl`) rolls the policy out inside
the meta-gradient through `Problem.environment`. The policy is the Gaussian
MLP of the `model` section's hidden sizes and activation (the paper: 2 x
100 ReLU). Meta-test goals are the paper's (`task.test_goals=paper`: its
test script's draw of `eval.num_tasks` goals, 40 in the paper) or drawn
from `eval.seed`; validation goals come from a separate stream.
"""
import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from metajax.backend import Formulations
from metajax.core.types import TaskBatch
from metajax.models import configs as model_configs
from metajax.models.policy import GaussianMLPPolicy
from metajax.settings import (
    ConfigError, Section, interval, positive, positive_int, setting)
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.rl.navigation import Navigation, rollout

VALIDATION_STREAM = 1
PAPER_TEST_SEED = 1  # `np.random.seed(1)` in cbfinn/maml_rl's test scripts
TEST_GOALS = ("paper", "sampled")
TEST_GOALS_HELP = ("meta-test goals: the paper's test script's (numpy seed "
                   "1) or drawn from eval.seed")


@dataclasses.dataclass(frozen=True)
class NavigationConfig(Section):
  """cbfinn/maml_rl's `point_env_randgoal` (the MAML paper, section 5.3)."""
  NAME = "navigation"
  horizon: int = setting(100, "steps per episode", check=positive_int)
  goal_range: tuple[float, ...] = setting((-0.5, 0.5), "goal coordinates ~ "
                                          "U[low, high]", check=interval)
  max_action: float = setting(0.1, "policy actions in [-1, 1] scaled by "
                              "this and clipped to +-this", check=positive)
  success_radius: float = setting(0.01, "done when both coordinates are "
                                  "this close to the goal", check=positive)
  observe_goal: bool = setting(False, "observe the goal with the position "
                               "(the paper's oracle)")
  test_goals: str = setting("paper", TEST_GOALS_HELP, choices=TEST_GOALS)

  def check(self):
    if self.horizon > 10_000:
      raise ConfigError(f"config field 'task.horizon': expected at most "
                        f"10000 steps, got {self.horizon}")


class Environment(NamedTuple):
  """What an RL algorithm needs of a task: `rollout(params, task_params,
  key, num_trajectories) -> Trajectories`, and the episode length."""
  rollout: Callable
  horizon: int


def not_supervised(task_name: str) -> Callable:
  """A stand-in for the supervised hooks of an RL `Problem`: raises the
  ConfigError that points to maml_rl."""
  def unsupervised(*args, **kwargs):
    del args, kwargs
    raise ConfigError(f"config field 'algorithm': task {task_name!r} is a "
                      "reinforcement-learning task; use --algorithm=maml_rl")
  return unsupervised


def check_rl_settings(config, observation_dim: int) -> None:
  """ConfigError unless the algorithm is maml_rl, the model an MLP and
  trajectories x horizon give the linear baseline enough samples."""
  task = config.task
  if config.algorithm.NAME != "maml_rl":
    not_supervised(task.NAME)()
  model_configs.require(config.model, ("mlp",), task.NAME)
  num_features = 2 * observation_dim + 4  # o, o^2, t, t^2, t^3, 1
  trajectories = config.algorithm.trajectories
  if trajectories * task.horizon < num_features:
    raise ConfigError(
        f"config field 'algorithm.trajectories': {trajectories} "
        f"trajectories of task.horizon={task.horizon} steps give fewer than "
        f"the {num_features} samples the linear baseline fits; raise either")


def paper_test_goals(low: float, high: float, goal_size: int) -> Callable:
  """`draw(num_tasks) -> (num_tasks, goal_size)`: the meta-test goals of the
  paper's test scripts, `np.random.seed(1)` then `np.random.uniform(low,
  high, size)` (cbfinn/maml_rl `test_maml_point.py`, `test_maml_cheetah.py`)."""
  def draw(num_tasks: int):
    rng = np.random.RandomState(PAPER_TEST_SEED)
    goals = rng.uniform(low, high, size=(num_tasks, goal_size))
    return jnp.asarray(goals, jnp.float32)
  return draw


def goal_problem(config, formulations: Formulations, env, rollout: Callable,
                 test_goals: Optional[Callable] = None) -> Problem:
  """The RL `Problem` of an environment whose tasks are goals.

  `env` has `sample_goals(key, num_tasks) -> (num_tasks, G)`,
  `observation_dim`, `action_dim` and `horizon`; `rollout(env, policy_fn,
  params, goal, key, num_trajectories) -> Trajectories`. A meta-batch holds
  `outer.meta_batch_size` goals in both support and query; meta-test goals
  are `test_goals(num_tasks)` when given (the paper's, `paper_test_goals`),
  else drawn from `eval.seed`; validation goals always come from a separate
  stream of `eval.seed`.
  """
  task_name = config.task.NAME
  model = GaussianMLPPolicy(action_dim=env.action_dim,
                            hidden_sizes=tuple(config.model.hidden_sizes),
                            activation=config.model.activation)
  meta_batch_size = config.outer.meta_batch_size

  def train_sampler(key):
    goals_TxG = env.sample_goals(key, meta_batch_size)
    return TaskBatch(support=goals_TxG, query=goals_TxG)

  def eval_tasks(split="test", num_tasks=None):
    if split not in ("test", "val"):
      raise ValueError(f"{task_name} evaluation split must be one of "
                       f"['test', 'val'], got {split!r}")
    num_tasks = num_tasks or config.eval.num_tasks
    key = jax.random.key(config.eval.seed)
    if split == "val":
      goals = env.sample_goals(jax.random.fold_in(key, VALIDATION_STREAM),
                               num_tasks)
    elif test_goals is not None:
      goals = test_goals(num_tasks)
    else:
      goals = env.sample_goals(key, num_tasks)
    return {f"{num_tasks} goals": TaskBatch(support=goals, query=goals)}

  def environment_rollout(params, goal_G, key, num_trajectories):
    return rollout(env, model.apply, params, goal_G, key, num_trajectories)

  unsupervised = not_supervised(task_name)
  return Problem(
      kind="reinforcement", model=model,
      init_params=lambda key: model.init(
          key, jnp.zeros((1, env.observation_dim))),
      loss_fn=unsupervised, metric_fn=None, train_sampler=train_sampler,
      evaluate=unsupervised, eval_tasks=eval_tasks,
      formulations=formulations,
      environment=Environment(rollout=environment_rollout,
                              horizon=env.horizon))


def build(config, formulations: Formulations) -> Problem:
  """The navigation `Problem` of `config`."""
  task = config.task
  low, high = task.goal_range
  env = Navigation(horizon=task.horizon, max_action=task.max_action,
                   success_radius=task.success_radius, goal_low=low,
                   goal_high=high, observe_goal=task.observe_goal)
  check_rl_settings(config, observation_dim=env.observation_dim)
  test_goals = (paper_test_goals(low, high, 2)
                if task.test_goals == "paper" else None)
  return goal_problem(config, formulations, env, rollout, test_goals)


NAVIGATION = TaskDomain(name="navigation", config_class=NavigationConfig,
                        build=build)
