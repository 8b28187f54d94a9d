"""Inner SGD with learned rates (Meta-SGD, MAML++), as an optax transform.

The rates are meta-parameters stored unconstrained as log-rates; the
transform closes over them, so `adapt(..., inner_optimizer=...)` carries
their meta-gradient like any other traced value.
"""
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class LearnedRateState(NamedTuple):
  """The inner step index (selects MAML++'s per-step rate)."""
  step: jax.Array


def learned_rate_sgd(log_lr: PyTree, per_step: bool = False
                     ) -> optax.GradientTransformation:
  """SGD whose update is `-exp(log_lr) * grad`, leaf by leaf.

  Args:
    log_lr: pytree with the structure of the parameters. Each leaf broadcasts
      against its parameter (Meta-SGD: same shape, one rate per entry) or,
      with `per_step`, has a leading axis of inner steps (MAML++: shape
      `(num_steps,)`, one rate per parameter tensor and step).
    per_step: pick row `step` of each leaf at inner step `step`; steps past
      the last row reuse it (evaluation may run more steps than training).

  Returns:
    An optax `GradientTransformation`.
  """
  def init(params):
    del params
    return LearnedRateState(step=jnp.zeros((), jnp.int32))

  def update(grads, state, params=None):
    del params

    def scale(grad, log_rate):
      if per_step:
        log_rate = log_rate[jnp.minimum(state.step, log_rate.shape[0] - 1)]
      return -jnp.exp(log_rate).astype(grad.dtype) * grad

    updates = jax.tree.map(scale, grads, log_lr)
    return updates, LearnedRateState(step=state.step + 1)

  return optax.GradientTransformation(init, update)


def init_log_rates(params: PyTree, learning_rate: float,
                   num_steps: int = 0) -> PyTree:
  """`log(learning_rate)` per parameter entry, or per tensor and step.

  `num_steps == 0`: leaves shaped like the parameters (Meta-SGD); otherwise
  leaves of shape `(num_steps,)` (MAML++'s per-layer, per-step rates).
  """
  log_rate = math.log(learning_rate)
  if num_steps:
    return jax.tree.map(
        lambda p: jnp.full((num_steps,), log_rate, jnp.result_type(p)), params)
  return jax.tree.map(lambda p: jnp.full_like(p, log_rate), params)


def mean_rate(log_lr: PyTree) -> jax.Array:
  """Mean learned rate over all entries (a metric)."""
  rates = [jnp.exp(leaf).ravel() for leaf in jax.tree.leaves(log_lr)]
  return jnp.mean(jnp.concatenate(rates))
