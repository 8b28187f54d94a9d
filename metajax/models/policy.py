"""A Gaussian MLP policy: the MAML-RL paper's (rllab's GaussianMLPPolicy)."""
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.models.mlp import get_activation


class GaussianMLPPolicy(nn.Module):
  """Action mean from an MLP of the observation; a learned,
  state-independent log standard deviation (rllab's `init_std=1`: 0).
  Kernels start Glorot-uniform and biases at zero, as rllab's
  (`xavier_initializer`), not flax's LeCun-normal default: at the
  two-dimensional input of navigation the latter is five times wider.

  `__call__(obs_BxO) -> (mean_BxA, log_std_A)`.
  """
  action_dim: int
  hidden_sizes: Sequence[int] = (100, 100)
  activation: str = "relu"
  init_log_std: float = 0.0

  @nn.compact
  def __call__(self, obs_BxO):
    act = get_activation(self.activation)
    h = obs_BxO
    dense = functools.partial(nn.Dense,
                              kernel_init=nn.initializers.glorot_uniform())
    for width in self.hidden_sizes:
      h = act(dense(width)(h))
    mean_BxA = dense(self.action_dim)(h)
    log_std_A = self.param(
        "log_std", lambda _, shape: jnp.full(shape, self.init_log_std,
                                             jnp.float32),
        (self.action_dim,))
    return mean_BxA, log_std_A.astype(mean_BxA.dtype)


def gaussian_log_prob(mean_BxA, log_std_A, actions_BxA):
  """log N(actions; mean, exp(log_std)^2), summed over action dimensions."""
  log_std_A = jnp.broadcast_to(log_std_A, mean_BxA.shape)
  z_BxA = (actions_BxA - mean_BxA) * jnp.exp(-log_std_A)
  return jnp.sum(-0.5 * jnp.square(z_BxA) - log_std_A
                 - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def gaussian_kl(mean_p_BxA, log_std_p_A, mean_q_BxA, log_std_q_A):
  """KL(p || q) of diagonal Gaussians, summed over action dimensions."""
  log_std_p_A = jnp.broadcast_to(log_std_p_A, mean_p_BxA.shape)
  log_std_q_A = jnp.broadcast_to(log_std_q_A, mean_q_BxA.shape)
  var_p, var_q = jnp.exp(2 * log_std_p_A), jnp.exp(2 * log_std_q_A)
  return jnp.sum(log_std_q_A - log_std_p_A
                 + (var_p + jnp.square(mean_p_BxA - mean_q_BxA))
                 / (2 * var_q) - 0.5, axis=-1)


def sample_actions(key, mean_BxA, log_std_A):
  """Actions drawn from the policy, held constant (no pathwise gradient)."""
  eps_BxA = jax.random.normal(key, mean_BxA.shape, mean_BxA.dtype)
  log_std_A = jnp.broadcast_to(log_std_A, mean_BxA.shape)
  return jax.lax.stop_gradient(mean_BxA + jnp.exp(log_std_A) * eps_BxA)
