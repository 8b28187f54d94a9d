"""2D navigation, exactly as the MAML paper's code (cbfinn/maml_rl,
`point_env_randgoal.py`), as pure JAX functions.

A point starts at (0, 0); the observation is its position (and the goal,
for the oracle); the policy acts in [-1, 1], and an action is scaled by
`max_action` and clipped to +-`max_action` per coordinate, as rllab's
`normalize` wrapper does in the paper's code, then added to the position;
the reward is minus the Euclidean distance from the new position to the
goal; the episode is done when both coordinates are within
`success_radius` of the goal, and the rest of the trajectory is masked. Goals are uniform in
[low, high]^2. `rollout` samples trajectories with `lax.scan` over time and
vectorises over trajectories; vmap it over tasks.
"""
import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from metajax.models.policy import sample_actions


@dataclasses.dataclass(frozen=True)
class Navigation:
  """The environment's constants (hashable, so it can be closed over)."""
  horizon: int = 100
  max_action: float = 0.1
  success_radius: float = 0.01
  goal_low: float = -0.5
  goal_high: float = 0.5
  observe_goal: bool = False
  action_dim: int = 2

  @property
  def observation_dim(self) -> int:
    return 4 if self.observe_goal else 2

  def observe(self, position_Nx2, goal_2):
    """The position, followed by the goal when `observe_goal` (the
    paper's oracle, `point_env_randgoal_oracle.py`)."""
    if not self.observe_goal:
      return position_Nx2
    goal_Nx2 = jnp.broadcast_to(goal_2, position_Nx2.shape)
    return jnp.concatenate([position_Nx2, goal_Nx2], axis=-1)

  def sample_goals(self, key, num_tasks: int):
    """Goals uniform in [goal_low, goal_high]^2, shape `(num_tasks, 2)`."""
    return jax.random.uniform(key, (num_tasks, 2), minval=self.goal_low,
                              maxval=self.goal_high)

  def reset(self, goal_2):
    """The start position (0, 0)."""
    return jnp.zeros_like(goal_2)

  def step(self, position_2, action_2, goal_2):
    """`(next_position, reward, done)` after taking `action_2`, an action
    of the policy's [-1, 1] scale."""
    action_2 = jnp.clip(self.max_action * action_2, -self.max_action,
                        self.max_action)
    next_2 = position_2 + action_2
    offset_2 = next_2 - goal_2
    reward = -jnp.sqrt(jnp.sum(jnp.square(offset_2)))
    done = jnp.all(jnp.abs(offset_2) < self.success_radius)
    return next_2, reward, done


class Trajectories(NamedTuple):
  """A batch of trajectories, held constant (sampled, not differentiated).

  Attributes:
    obs: observations before each action, `(N, T, O)`.
    actions: the sampled actions, unscaled and unclipped, `(N, T, A)`.
    rewards: `(N, T)`, zero after the end.
    mask: `(N, T)`, 1 for the steps taken.
  """
  obs: jax.Array
  actions: jax.Array
  rewards: jax.Array
  mask: jax.Array


def rollout(env: Navigation, policy_fn: Callable, params, goal_2, key,
            num_trajectories: int) -> Trajectories:
  """`num_trajectories` episodes of `env.horizon` steps towards `goal_2`.

  `policy_fn(params, obs_BxO) -> (mean_BxA, log_std_A)`. The parameters,
  actions and transitions are held constant: no pathwise gradient leaks
  into a score-function estimator.
  """
  params = jax.lax.stop_gradient(params)
  step_keys = jax.random.split(key, env.horizon)
  position_Nx2 = jnp.broadcast_to(env.reset(goal_2), (num_trajectories, 2))
  alive_N = jnp.ones((num_trajectories,), position_Nx2.dtype)

  def body(carry, step_key):
    position_Nx2, alive_N = carry
    obs_NxO = env.observe(position_Nx2, goal_2)
    mean_NxA, log_std_A = policy_fn(params, obs_NxO)
    actions_NxA = sample_actions(step_key, mean_NxA, log_std_A)
    next_Nx2, reward_N, done_N = jax.vmap(env.step, (0, 0, None))(
        position_Nx2, actions_NxA, goal_2)
    record = (obs_NxO, actions_NxA, reward_N * alive_N, alive_N)
    next_Nx2 = jnp.where(alive_N[:, None] > 0, next_Nx2, position_Nx2)
    alive_N = alive_N * (1.0 - done_N.astype(alive_N.dtype))
    return (next_Nx2, alive_N), record

  _, (obs, actions, rewards, mask) = jax.lax.scan(
      body, (position_Nx2, alive_N), step_keys)
  swap = lambda x: jnp.swapaxes(x, 0, 1)
  return jax.lax.stop_gradient(Trajectories(
      swap(obs), swap(actions), swap(rewards), swap(mask)))
