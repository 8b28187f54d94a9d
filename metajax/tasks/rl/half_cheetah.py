"""Half-cheetah velocity and direction tasks (the MAML paper, section 5.3)
on brax's half-cheetah.

The physics is brax's `halfcheetah` (MuJoCo's model; backend `mjx` or
`generalized`, 5 physics steps of 0.01 s per action, observation the 17
joint positions and velocities without the x position, actions clipped to
[-1, 1]). Only the reward is the paper's, computed here from the x-velocity
brax reports (the torso's x displacement over the 0.05 s step) and the
clipped action `a`:

  velocity   -|v_x - v_goal| - ctrl_cost |a|^2,  v_goal ~ U[goal_range]
  direction  d v_x - ctrl_cost |a|^2,            d = +1 or -1, equally likely

with ctrl_cost 0.05 (rllab's 0.5 * 0.1). The per-task parameter ("goal")
is an array of shape `(1,)`: the goal velocity or the direction.

brax is an optional extra (`pip install -e ".[rl]"`) and is imported only
inside the functions here, so importing metajax never needs it.
`require_brax` turns its absence into a ConfigError naming the field.
brax is written for broadcasting ranks, so its calls run with rank
promotion allowed whatever the caller's setting.
"""
import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp

from metajax.models.policy import sample_actions
from metajax.settings import ConfigError
from metajax.tasks.rl.navigation import Trajectories

VARIANTS = ("velocity", "direction")
BACKENDS = ("mjx", "generalized")
OBSERVATION_DIM = 17  # brax halfcheetah: q without x (8) and qd (9)
ACTION_DIM = 6
INSTALL = 'pip install -e ".[rl]"'


def require_brax(field: str = "task"):
  """`brax.envs`, or a ConfigError naming `field` and how to install brax."""
  try:
    from brax import envs  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ConfigError(
        f"config field {field!r}: the half-cheetah tasks run on the physics "
        f"engine brax, which cannot be imported ({error}); install "
        f"metajax's rl extra: {INSTALL}") from None
  return envs


@functools.lru_cache(maxsize=None)
def brax_halfcheetah(backend: str):
  """brax's `halfcheetah` environment on `backend`, built once per backend
  and eagerly even when first asked for inside a trace (the cached system
  must hold arrays, not the tracers of one transformation)."""
  envs = require_brax()
  with jax.ensure_compile_time_eval(), warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*not actively being "
                            "maintained", category=UserWarning)
    return envs.get_environment("halfcheetah", backend=backend)


@dataclasses.dataclass(frozen=True)
class HalfCheetah:
  """The task family's constants (hashable, so it can be closed over)."""
  variant: str = "velocity"
  horizon: int = 200
  backend: str = "mjx"
  goal_low: float = 0.0
  goal_high: float = 2.0
  ctrl_cost: float = 0.05
  observation_dim: int = OBSERVATION_DIM
  action_dim: int = ACTION_DIM

  @property
  def physics(self):
    return brax_halfcheetah(self.backend)

  def sample_goals(self, key, num_tasks: int):
    """Per-task parameters, `(num_tasks, 1)`: goal velocities uniform in
    [goal_low, goal_high], or directions +-1 with equal odds."""
    if self.variant == "velocity":
      return jax.random.uniform(key, (num_tasks, 1), minval=self.goal_low,
                                maxval=self.goal_high)
    forward = jax.random.bernoulli(key, 0.5, (num_tasks, 1))
    return jnp.where(forward, 1.0, -1.0)

  def reward(self, x_velocity, action_A, goal_1):
    """The paper's reward of a step at `x_velocity` with the (clipped)
    action `action_A`."""
    control = self.ctrl_cost * jnp.sum(jnp.square(action_A), axis=-1)
    if self.variant == "velocity":
      return -jnp.abs(x_velocity - goal_1[0]) - control
    return goal_1[0] * x_velocity - control

  def reset(self, key):
    """brax's start state: the initial pose with its small random noise."""
    with jax.numpy_rank_promotion("allow"):
      return self.physics.reset(key)

  def step(self, state, action_A, goal_1):
    """`(next_state, reward)` after taking `action_A` (clipped to +-1)."""
    action_A = jnp.clip(action_A, -1.0, 1.0)
    with jax.numpy_rank_promotion("allow"):
      next_state = self.physics.step(state, action_A)
    x_velocity = next_state.metrics["x_velocity"]
    return next_state, self.reward(x_velocity, action_A, goal_1)


def rollout(env: HalfCheetah, policy_fn, params, goal_1, key,
            num_trajectories: int) -> Trajectories:
  """`num_trajectories` episodes of `env.horizon` steps for `goal_1`.

  `policy_fn(params, obs_BxO) -> (mean_BxA, log_std_A)`. A `lax.scan` over
  time of the physics vmapped over trajectories (vmap this over tasks).
  The parameters, sampled actions and every transition are held constant:
  brax's physics is differentiable, and its pathwise gradient must not leak
  into a score-function estimator. The cheetah never terminates, so the
  mask is all ones.
  """
  params = jax.lax.stop_gradient(params)
  reset_key, steps_key = jax.random.split(key)
  state_N = jax.vmap(env.reset)(jax.random.split(reset_key, num_trajectories))
  state_N = jax.lax.stop_gradient(state_N)

  def body(state_N, step_key):
    obs_NxO = state_N.obs
    mean_NxA, log_std_A = policy_fn(params, obs_NxO)
    actions_NxA = sample_actions(step_key, mean_NxA, log_std_A)
    next_N, reward_N = jax.vmap(env.step, (0, 0, None))(
        state_N, actions_NxA, goal_1)
    return jax.lax.stop_gradient(next_N), (obs_NxO, actions_NxA, reward_N)

  _, (obs, actions, rewards) = jax.lax.scan(
      body, state_N, jax.random.split(steps_key, env.horizon))
  swap = lambda x: jnp.swapaxes(x, 0, 1)
  rewards_NxT = swap(rewards)
  return jax.lax.stop_gradient(Trajectories(
      swap(obs), swap(actions), rewards_NxT, jnp.ones_like(rewards_NxT)))
