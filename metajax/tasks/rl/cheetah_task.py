"""The "cheetah_vel" and "cheetah_dir" task domains: MAML-RL's half-cheetah
velocity and direction tasks (the MAML paper, section 5.3) on brax.

A meta-batch is a `TaskBatch` whose support and query both hold the
per-task parameters `(meta_batch, 1)` (goal velocity or direction); the
algorithm (`maml_rl`) rolls the policy out inside the meta-gradient through
`Problem.environment`, as for navigation. The policy is the Gaussian MLP of
the `model` section (the paper: 2 x 100 ReLU). Meta-test tasks are
`eval.num_tasks` goals (the paper: 40): for velocity, the paper's test
script's (`task.test_goals=paper`) or drawn from `eval.seed`; for
direction, drawn from `eval.seed`. Validation goals come from a separate
stream. brax (`pip install -e ".[rl]"`) is needed only
when one of these tasks is built; its absence is a ConfigError naming
`task`, raised before anything compiles.
"""
import dataclasses

from metajax.backend import Formulations
from metajax.settings import (
    ConfigError, Section, interval, non_negative, positive_int, setting)
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.rl import half_cheetah
from metajax.tasks.rl.task import (
    TEST_GOALS, TEST_GOALS_HELP, check_rl_settings, goal_problem,
    paper_test_goals)

MAX_HORIZON = 1000  # brax's and gym's half-cheetah episode length


@dataclasses.dataclass(frozen=True)
class HalfCheetahConfig(Section):
  """The settings both half-cheetah task families share."""
  horizon: int = setting(200, "steps per episode (0.05 s each)",
                         check=positive_int)
  backend: str = setting("mjx", "brax physics backend",
                         choices=half_cheetah.BACKENDS)
  ctrl_cost: float = setting(0.05, "weight of the squared action in the "
                             "reward", check=non_negative)

  def check(self):
    if self.horizon > MAX_HORIZON:
      raise ConfigError(f"config field 'task.horizon': expected at most "
                        f"{MAX_HORIZON} steps, got {self.horizon}")


@dataclasses.dataclass(frozen=True)
class CheetahVelocityConfig(HalfCheetahConfig):
  """Run at a goal velocity: reward -|v_x - v_goal| - ctrl_cost |a|^2."""
  NAME = "cheetah_vel"
  goal_range: tuple[float, ...] = setting(
      (0.0, 2.0), "goal velocities ~ U[low, high]", check=interval)
  test_goals: str = setting("paper", TEST_GOALS_HELP, choices=TEST_GOALS)


@dataclasses.dataclass(frozen=True)
class CheetahDirectionConfig(HalfCheetahConfig):
  """Run forward or backward: reward +-v_x - ctrl_cost |a|^2."""
  NAME = "cheetah_dir"


def make_env(task: HalfCheetahConfig) -> half_cheetah.HalfCheetah:
  """The `HalfCheetah` of a task section (a goal range for velocity only)."""
  if isinstance(task, CheetahVelocityConfig):
    low, high = task.goal_range
    return half_cheetah.HalfCheetah(
        variant="velocity", horizon=task.horizon, backend=task.backend,
        goal_low=low, goal_high=high, ctrl_cost=task.ctrl_cost)
  return half_cheetah.HalfCheetah(
      variant="direction", horizon=task.horizon, backend=task.backend,
      ctrl_cost=task.ctrl_cost)


def build(config, formulations: Formulations) -> Problem:
  """The half-cheetah `Problem` of `config` (ConfigError without brax)."""
  task = config.task
  check_rl_settings(config, observation_dim=half_cheetah.OBSERVATION_DIM)
  half_cheetah.require_brax("task")
  env = make_env(task)
  physics = env.physics  # Its observation: q without x, and qd.
  sizes = (physics.sys.q_size() - 1 + physics.sys.qd_size(),
           physics.action_size)
  if sizes != (env.observation_dim, env.action_dim):
    raise ConfigError(
        f"config field 'task': this brax's halfcheetah has observation and "
        f"action sizes {sizes}; expected {env.observation_dim}, "
        f"{env.action_dim}")
  test_goals = None
  if isinstance(task, CheetahVelocityConfig) and task.test_goals == "paper":
    test_goals = paper_test_goals(env.goal_low, env.goal_high, 1)
  return goal_problem(config, formulations, env, half_cheetah.rollout,
                      test_goals)


CHEETAH_VEL = TaskDomain(name="cheetah_vel",
                         config_class=CheetahVelocityConfig, build=build)
CHEETAH_DIR = TaskDomain(name="cheetah_dir",
                         config_class=CheetahDirectionConfig, build=build)
