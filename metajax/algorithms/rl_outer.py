"""MAML-RL's outer steps beyond the plain meta-gradient: TRPO and ProMP.

Both take one meta-iteration's samples (`Batch`, the policy-gradient signals
computed once when sampled) and the per-task functions of `maml_rl._Parts`,
and return the change of the meta-parameters; `maml_rl` hands it to the
trainer as minus a gradient for its outer SGD at rate 1.

TRPO (the MAML paper's outer step): a conjugate-gradient natural step on the
importance-weighted meta-objective, scaled to the adapted policies' mean KL
bound and backtracked by halves (`backtracking_line_search`).

ProMP (Rothfuss et al. 2019, Algorithm 1, eq. (7)-(9)): `promp_steps` Adam
steps on the same samples, each on PPO's clipped ratio of the adapted policy
to the one that sampled the query trajectories, minus a KL penalty between
the pre-update policies of each inner step (one coefficient per step, fixed
or, with `promp_adaptive_kl`, halved or doubled after each iteration towards
`promp_kl_target` as ProMP's code does); the inner step is LVC
importance-weighted to the sampling policy, so it is LVC's step at the first
iteration and stays correct after the meta-parameters moved. Adam's moments
and the KL coefficients persist across meta-iterations (as ProMP's
TensorFlow optimizer's and its algorithm's do) in the meta-params
(`init_promp_state`), which checkpoints and resumes them with the policy.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metajax.core import policy_gradient as pg
from metajax.core.linear_solve import conjugate_gradient
from metajax.models.policy import gaussian_kl, gaussian_log_prob


class Batch(NamedTuple):
  """One meta-iteration's samples, every leaf with a leading task axis.

  Attributes:
    inner: the trajectories of each inner step (a tuple, one per step).
    inner_signals: their `pg.Signals`, in the same order.
    query: the adapted policy's trajectories.
    query_signals: their `pg.Signals`.
  """
  inner: tuple
  inner_signals: tuple
  query: object
  query_signals: pg.Signals


def masked_mean(x_TxNxT, mask_TxNxT):
  return jnp.sum(x_TxNxT * mask_TxNxT) / jnp.maximum(jnp.sum(mask_TxNxT), 1.0)


def backtracking_line_search(evaluate, num_steps: int, max_kl: float,
                             dtype=jnp.float32):
  """The first of the fractions 1, 1/2, ..., 2^-(num_steps - 1) at which
  `evaluate(fraction) -> (gain, kl)` improves (finite gain > 0) within
  `max_kl`; a `while_loop`, so the fractions after it are never evaluated.

  Returns:
    `(fraction, kl, tried)`: the accepted fraction and its KL (both 0 when
    none is accepted) and the number of fractions evaluated.
  """
  def cond(carry):
    tried, found, _, _ = carry
    return jnp.logical_not(found) & (tried < num_steps)

  def body(carry):
    tried, _, _, _ = carry
    fraction = jnp.asarray(0.5, dtype) ** tried
    gain, kl = evaluate(fraction)
    ok = (gain > 0) & (kl <= max_kl) & jnp.isfinite(gain)
    return tried + 1, ok, fraction, kl.astype(dtype)

  zero = jnp.zeros((), dtype)
  tried, found, fraction, kl = jax.lax.while_loop(
      cond, body, (jnp.zeros((), jnp.int32), jnp.array(False), zero, zero))
  return (jnp.where(found, fraction, zero), jnp.where(found, kl, zero),
          tried)


def _adapted_dists(parts, params, batch):
  """Each task's adapted policy on its query observations (mean, log-std)."""
  adapted_T = jax.vmap(parts.readapt, (None, 0, 0))(
      params, batch.inner, batch.inner_signals)
  return jax.vmap(parts.policy_fn)(adapted_T, batch.query.obs)


def _sampling_log_probs(parts, params, batch):
  """Log-probabilities of the query actions under the policies that sampled
  them (the adapted ones at `params`), held constant."""
  old_T = jax.lax.stop_gradient(_adapted_dists(parts, params, batch))
  return old_T, jax.vmap(gaussian_log_prob)(old_T[0], old_T[1],
                                            batch.query.actions)


def trpo_step(parts, settings, params, batch):
  """TRPO's change of `params` and its metrics."""
  flat0, unravel = ravel_pytree(params)
  old_T, logp_ref_T = _sampling_log_probs(parts, params, batch)

  def surrogate(flat):
    return parts.meta_objective(unravel(flat), batch, logp_ref_T)

  def mean_kl(flat):
    new_T = _adapted_dists(parts, unravel(flat), batch)
    kl_TxNxT = jax.vmap(gaussian_kl)(old_T[0], old_T[1], new_T[0], new_T[1])
    return masked_mean(kl_TxNxT, batch.query.mask)

  value, g = jax.value_and_grad(surrogate)(flat0)
  fisher = lambda v: (jax.jvp(jax.grad(mean_kl), (flat0,), (v,))[1]
                      + settings.cg_damping * v)
  direction = conjugate_gradient(fisher, g, settings.cg_iterations).solution
  shs = jnp.maximum(direction @ fisher(direction), 1e-12)
  full_step = jnp.sqrt(2 * settings.max_kl / shs) * direction

  def evaluate(fraction):
    candidate = flat0 + fraction * full_step
    return surrogate(candidate) - value, mean_kl(candidate)

  fraction, kl, tried = backtracking_line_search(
      evaluate, settings.line_search_steps, settings.max_kl, flat0.dtype)
  metrics = parts.metrics(batch, value)
  metrics.update(trpo_step_fraction=fraction, trpo_kl=kl,
                 trpo_fractions_tried=tried)
  return unravel(fraction * full_step), metrics


def init_promp_state(params, inner_steps: int, kl_coeff: float):
  """ProMP's Adam moments and step count (a float, so the trainer's SGD
  applies its change like any other leaf's) and its KL coefficient of each
  inner step."""
  zeros = jax.tree.map(jnp.zeros_like, params)
  return {"mu": zeros, "nu": zeros,
          "count": jnp.zeros((), jnp.float32),
          "kl_coeff": jnp.full((inner_steps,), kl_coeff, jnp.float32)}


def adapt_kl_coeff(kl_coeff_K, kl_K, target: float):
  """ProMP's rule, per inner step: halve the coefficient where the KL is
  under target / 1.5, double it where it is over 1.5 target."""
  return jnp.where(kl_K < target / 1.5, kl_coeff_K / 2,
                   jnp.where(kl_K > target * 1.5, kl_coeff_K * 2, kl_coeff_K))


def adam_ascent(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-8):
  """One Adam step up `grads` (TensorFlow's and optax's defaults)."""
  count = state["count"] + 1
  mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["mu"], grads)
  nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["nu"],
                    grads)
  c1, c2 = 1 - b1 ** count, 1 - b2 ** count
  params = jax.tree.map(
      lambda p, m, v: p + lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
      params, mu, nu)
  return params, {**state, "mu": mu, "nu": nu, "count": count}


def promp_objective(parts, settings, params, batch, refs, kl_coeff_K):
  """ProMP's meta-objective (maximised) and its parts: the clipped ratio of
  each task's adapted policy on its query trajectories, minus the mean over
  inner steps k of `kl_coeff_K[k]` times the mean KL(sampling || current) of
  the policy at step k on that step's trajectories. The parts are the
  clipped ratio and the KL of each step, `(K,)`, both means over tasks.

  `refs = (inner_logp_refs, inner_dists, query_logp_ref)`: the sampling
  policies' log-probabilities and distributions, held constant.
  """
  inner_logp_refs, inner_dists, query_logp_ref = refs

  def one_task(inner, inner_signals, inner_refs, dists, query, query_signals,
               logp_ref):
    current, kls = params, []
    for trajectories, signals, ref, (mean_old, log_std_old) in zip(
        inner, inner_signals, inner_refs, dists):
      mean_new, log_std_new = parts.policy_fn(current, trajectories.obs)
      kl_NxT = gaussian_kl(mean_old, log_std_old, mean_new, log_std_new)
      kls.append(masked_mean(kl_NxT, trajectories.mask))
      current = parts.ascent(current, trajectories, signals, parts.inner_lr,
                             parts.first_order, ref)
    per_trajectory_N = pg.clipped_ratio(
        parts.log_probs(current, query), query_signals, logp_ref,
        settings.clip_eps)
    count = jnp.maximum(jnp.sum(query.mask), 1.0)
    return jnp.sum(per_trajectory_N) / count, jnp.stack(kls)

  clipped_T, kl_TxK = jax.vmap(one_task)(
      batch.inner, batch.inner_signals, inner_logp_refs, inner_dists,
      batch.query, batch.query_signals, query_logp_ref)
  clipped, kl_K = jnp.mean(clipped_T), jnp.mean(kl_TxK, axis=0)
  return clipped - jnp.mean(kl_coeff_K * kl_K), (clipped, kl_K)


def promp_refs(parts, params, batch):
  """What `promp_objective` holds constant: the sampling policies of every
  inner step and of the query, at the meta-parameters that sampled."""
  def one_task(inner, inner_signals, query):
    current, logps, dists = params, [], []
    for trajectories, signals in zip(inner, inner_signals):
      mean, log_std = parts.policy_fn(current, trajectories.obs)
      dists.append((mean, log_std))
      logps.append(gaussian_log_prob(mean, log_std, trajectories.actions))
      current = parts.ascent(current, trajectories, signals, parts.inner_lr)
    return tuple(logps), tuple(dists), parts.log_probs(current, query)

  return jax.lax.stop_gradient(jax.vmap(one_task)(
      batch.inner, batch.inner_signals, batch.query))


def promp_step(parts, settings, params, state, batch):
  """`promp_steps` Adam steps on ProMP's objective of one batch: the new
  params and ProMP state, and the metrics (of the first step's objective and
  the last step's KL terms). With `promp_adaptive_kl`, the inner KL of each
  step at the new params (ProMP's statistics after optimising) then moves
  that step's coefficient (`adapt_kl_coeff`)."""
  refs = promp_refs(parts, params, batch)
  objective = lambda p: promp_objective(parts, settings, p, batch, refs,
                                        state["kl_coeff"])
  value_and_grad = jax.value_and_grad(objective, has_aux=True)

  def one_step(carry, _):
    current, state = carry
    (value, (clipped, kl_K)), grads = value_and_grad(current)
    current, state = adam_ascent(current, grads, state, settings.promp_lr)
    return (current, state), (value, clipped, kl_K)

  (params, state), (values, clipped, kls) = jax.lax.scan(
      one_step, (params, state), None, settings.promp_steps)
  metrics = parts.metrics(batch, values[0])
  metrics.update(promp_clipped_objective=clipped[-1],
                 promp_inner_kl=jnp.mean(kls[-1]),
                 promp_kl_coeff=jnp.mean(state["kl_coeff"]))
  if settings.promp_adaptive_kl:
    _, (_, kl_after_K) = objective(params)
    state = {**state, "kl_coeff": adapt_kl_coeff(
        state["kl_coeff"], kl_after_K, settings.promp_kl_target)}
  return params, state, metrics
