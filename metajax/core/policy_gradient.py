"""Policy-gradient primitives: returns, GAE, a linear baseline, estimators.

Trajectories are batches of `N` trajectories of `T` steps; a `mask_NxT` of
ones marks the steps taken (a trajectory that ended early is zero after its
end). Every estimator returns, per trajectory, a scalar objective to
*maximise* whose derivatives of the orders below are estimates of those of
the expected return:

  surrogate    sum_t log pi_t * A_t. First order right; its Hessian keeps
               only E[sum_t (hess log pi_t) A_t] and drops the score-score
               term, so MAML's meta-gradient through it is biased (the
               original MAML-RL code; kept as an ablation).
  dice         DiCE with the baseline of Mao et al. 2019:
               sum_t box(W_t) g^t r_t + sum_t (box(W_{t-1}) - box(W_t)) g^t b_t,
               W_t the summed log-probabilities up to t. Every order
               unbiased for E[sum_t g^t r_t].
  loaded_dice  Loaded DiCE (Farquhar et al. 2019): sum_t (box(w_t) -
               box(w_t - log pi_t)) g^t A_t with w_t = lam w_{t-1} + log pi_t;
               equals `dice` in every order at lam = 1 and exact
               advantages; lam < 1 trades bias of the higher orders for
               variance.
  lvc          ProMP's low-variance curvature (Rothfuss et al. 2019):
               sum_t pi_t / stop(pi_t) * A_t. First order right; its Hessian
               drops the cross terms between different steps
               (E[sum_{t != t'} grad log pi_t grad log pi_t'^T ...]), exact
               for one-step problems.

Here box(x) = exp(x - x_ref), the DiCE "magic box": 1 in value, with every
derivative of x kept; `x_ref` is stop_gradient(x) unless the sampling
policy's log-probabilities are given (an importance-weighted surrogate for
TRPO's line search). `g` is the discount.

`clipped_ratio` is no estimator of the return's derivatives but ProMP's
outer objective: PPO's clipped likelihood ratio to the sampling policy.
"""
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

ESTIMATORS = ("surrogate", "dice", "loaded_dice", "lvc")


class Signals(NamedTuple):
  """What an estimator weighs the log-probabilities with (all `N x T`, held
  constant: no gradient flows into them).

  Attributes:
    rewards: rewards r_t (zero after a trajectory's end).
    values: baseline values b_t = V(s_t).
    advantages: advantage estimates A_t (GAE), discounted from step t.
    mask: 1 for the steps taken, 0 after a trajectory's end.
  """
  rewards: jax.Array
  values: jax.Array
  advantages: jax.Array
  mask: jax.Array


def magic_box(x, x_ref=None):
  """exp(x - x_ref): 1 in value (x_ref defaults to stop_gradient(x)), the
  derivatives of x kept to every order."""
  if x_ref is None:
    x_ref = jax.lax.stop_gradient(x)
  return jnp.exp(x - x_ref)


def _reverse_discounted_sum(x_NxT, factor_NxT):
  """y_t = x_t + factor_t * y_{t+1} along T (y_T = 0)."""
  def step(carry_N, inputs):
    x_N, f_N = inputs
    carry_N = x_N + f_N * carry_N
    return carry_N, carry_N
  _, y_TxN = jax.lax.scan(step, jnp.zeros_like(x_NxT[:, 0]),
                          (x_NxT.T, factor_NxT.T), reverse=True)
  return y_TxN.T


def discounted_returns(rewards_NxT, mask_NxT, discount: float):
  """Rewards-to-go sum_{t' >= t} discount^(t'-t) r_t', zero after the end."""
  rewards_NxT = rewards_NxT * mask_NxT
  factor_NxT = jnp.full_like(rewards_NxT, discount)
  return _reverse_discounted_sum(rewards_NxT, factor_NxT) * mask_NxT


def gae(rewards_NxT, values_NxT, mask_NxT, discount: float, lam: float):
  """Generalised advantage estimates (Schulman et al. 2016).

  The value after a trajectory's last step is 0 (as rllab's `process_samples`
  does at a path's end, whether it terminated or hit the horizon).
  """
  values_NxT = values_NxT * mask_NxT
  next_values_NxT = jnp.concatenate(
      [values_NxT[:, 1:], jnp.zeros_like(values_NxT[:, :1])], axis=1)
  deltas_NxT = (rewards_NxT + discount * next_values_NxT - values_NxT
                ) * mask_NxT
  factor_NxT = jnp.full_like(deltas_NxT, discount * lam)
  return _reverse_discounted_sum(deltas_NxT, factor_NxT) * mask_NxT


def baseline_features(obs_NxTxD, time_scale: float = 100.0):
  """rllab's `LinearFeatureBaseline` features of every step:
  [clip(o, +-10), o^2, t/100, (t/100)^2, (t/100)^3, 1]."""
  n, t = obs_NxTxD.shape[:2]
  o_NxTxD = jnp.clip(obs_NxTxD, -10.0, 10.0)
  al_NxTx1 = jnp.broadcast_to(
      (jnp.arange(t, dtype=obs_NxTxD.dtype) / time_scale)[None, :, None],
      (n, t, 1))
  return jnp.concatenate([o_NxTxD, jnp.square(o_NxTxD), al_NxTx1,
                          al_NxTx1 ** 2, al_NxTx1 ** 3,
                          jnp.ones_like(al_NxTx1)], axis=-1)


def fit_linear_baseline(features_NxTxF, returns_NxT, mask_NxT,
                        ridge: float = 1e-5):
  """Baseline values of every step from a ridge regression of the returns
  on the features, fitted in closed form on the steps taken (one task's
  trajectories); held constant (no gradient).

  The normal equations are solved by least squares (SVD, directions of
  negligible singular value dropped), not by LU: features that are exactly
  collinear, as a goal observed with the position (constant within a task)
  is with the constant feature, make them singular to float32 despite the
  ridge, and LU would return infinities where this returns the fit.
  """
  features_NxTxF, returns_NxT, mask_NxT = jax.lax.stop_gradient(
      (features_NxTxF, returns_NxT, mask_NxT))
  f_MxF = features_NxTxF.reshape((-1, features_NxTxF.shape[-1]))
  w_M = mask_NxT.reshape(-1)
  gram_FxF = (f_MxF * w_M[:, None]).T @ f_MxF
  rhs_F = (f_MxF * w_M[:, None]).T @ (returns_NxT.reshape(-1) * w_M)
  eye_FxF = jnp.eye(gram_FxF.shape[0], dtype=gram_FxF.dtype)
  coef_F = jnp.linalg.lstsq(gram_FxF + ridge * eye_FxF, rhs_F)[0]
  return (features_NxTxF @ coef_F) * mask_NxT


def standardize(signals: Signals) -> Signals:
  """Advantages centred and scaled to unit variance over the steps taken
  (rllab's `center_adv`); rewards and values divided by the same scale, so
  `dice`'s objective scales with the others'."""
  mask = signals.mask
  count = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(signals.advantages * mask) / count
  var = jnp.sum(jnp.square(signals.advantages - mean) * mask) / count
  scale = 1.0 / (jnp.sqrt(var) + 1e-8)
  return Signals(rewards=signals.rewards * scale,
                 values=signals.values * scale,
                 advantages=(signals.advantages - mean) * scale * mask,
                 mask=mask)


def make_signals(obs_NxTxD, rewards_NxT, mask_NxT, discount: float,
                 gae_lambda: float, normalize: bool = True) -> Signals:
  """Baseline fitted to one task's returns, GAE advantages, and optionally
  standardised (`standardize`); everything held constant."""
  obs_NxTxD, rewards_NxT, mask_NxT = jax.lax.stop_gradient(
      (obs_NxTxD, rewards_NxT, mask_NxT))
  rewards_NxT = rewards_NxT * mask_NxT
  returns_NxT = discounted_returns(rewards_NxT, mask_NxT, discount)
  values_NxT = fit_linear_baseline(baseline_features(obs_NxTxD), returns_NxT,
                                   mask_NxT)
  advantages_NxT = gae(rewards_NxT, values_NxT, mask_NxT, discount,
                       gae_lambda)
  signals = Signals(rewards_NxT, values_NxT, advantages_NxT, mask_NxT)
  return standardize(signals) if normalize else signals


def _discounts(signals: Signals, discount: float):
  t = signals.mask.shape[1]
  return (discount ** jnp.arange(t, dtype=signals.mask.dtype))[None, :]


def surrogate(logp_NxT, signals: Signals, discount: float = 1.0,
              logp_ref_NxT=None, dice_lambda: float = 1.0):
  """sum_t log pi_t A_t per trajectory (a ratio pi_t / pi_ref_t when
  `logp_ref_NxT` is given)."""
  del discount, dice_lambda
  weight_NxT = (logp_NxT if logp_ref_NxT is None
                else magic_box(logp_NxT, logp_ref_NxT))
  return jnp.sum(weight_NxT * signals.advantages * signals.mask, axis=1)


def lvc(logp_NxT, signals: Signals, discount: float = 1.0,
        logp_ref_NxT=None, dice_lambda: float = 1.0):
  """sum_t box(log pi_t) A_t per trajectory (ProMP's LVC)."""
  del discount, dice_lambda
  ratio_NxT = magic_box(logp_NxT, logp_ref_NxT)
  return jnp.sum(ratio_NxT * signals.advantages * signals.mask, axis=1)


def dice(logp_NxT, signals: Signals, discount: float = 1.0,
         logp_ref_NxT=None, dice_lambda: float = 1.0):
  """DiCE with the any-order baseline of Mao et al. 2019, per trajectory."""
  del dice_lambda
  mask = signals.mask
  logp_NxT = logp_NxT * mask
  cum_NxT = jnp.cumsum(logp_NxT, axis=1)
  cum_ref_NxT = None if logp_ref_NxT is None else jnp.cumsum(
      logp_ref_NxT * mask, axis=1)
  box_NxT = magic_box(cum_NxT, cum_ref_NxT)
  prev_box_NxT = jnp.concatenate(
      [jnp.ones_like(box_NxT[:, :1]), box_NxT[:, :-1]], axis=1)
  g_1xT = _discounts(signals, discount)
  return jnp.sum(g_1xT * mask * (box_NxT * signals.rewards
                                 + (prev_box_NxT - box_NxT) * signals.values),
                 axis=1)


def _decayed_cumsum(x_NxT, lam: float):
  """w_t = lam w_{t-1} + x_t along T."""
  def step(carry_N, x_N):
    carry_N = lam * carry_N + x_N
    return carry_N, carry_N
  _, w_TxN = jax.lax.scan(step, jnp.zeros_like(x_NxT[:, 0]), x_NxT.T)
  return w_TxN.T


def loaded_dice(logp_NxT, signals: Signals, discount: float = 1.0,
                logp_ref_NxT=None, dice_lambda: float = 1.0):
  """Loaded DiCE (Farquhar et al. 2019) per trajectory, past log-probs
  decayed by `dice_lambda`."""
  mask = signals.mask
  logp_NxT = logp_NxT * mask
  w_NxT = _decayed_cumsum(logp_NxT, dice_lambda)
  if logp_ref_NxT is None:
    box = magic_box(w_NxT) - magic_box(w_NxT - logp_NxT)
  else:
    w_ref_NxT = _decayed_cumsum(logp_ref_NxT * mask, dice_lambda)
    box = (magic_box(w_NxT, w_ref_NxT)
           - magic_box(w_NxT - logp_NxT, w_ref_NxT - logp_ref_NxT * mask))
  g_1xT = _discounts(signals, discount)
  return jnp.sum(g_1xT * mask * box * signals.advantages, axis=1)


def clipped_ratio(logp_NxT, signals: Signals, logp_ref_NxT, clip_eps: float):
  """PPO's clipped objective per trajectory (ProMP's J^CLIP, eq. (9)):
  sum_t min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t), r_t = pi_t / pi_ref_t
  the ratio to the policy that sampled the step. Where the ratio has left
  [1 - eps, 1 + eps] in the direction that raises the objective the term is
  constant (no gradient), so repeated steps on one batch stay near it."""
  ratio_NxT = jnp.exp(logp_NxT - logp_ref_NxT)
  clipped_NxT = jnp.clip(ratio_NxT, 1.0 - clip_eps, 1.0 + clip_eps)
  advantages_NxT = signals.advantages
  return jnp.sum(jnp.minimum(ratio_NxT * advantages_NxT,
                             clipped_NxT * advantages_NxT) * signals.mask,
                 axis=1)


def get(name: str) -> Callable:
  """The estimator called `name` (one of `ESTIMATORS`)."""
  table = {"surrogate": surrogate, "dice": dice, "loaded_dice": loaded_dice,
           "lvc": lvc}
  if name not in table:
    raise ValueError(f"unknown estimator {name!r}; expected one of "
                     f"{list(ESTIMATORS)}")
  return table[name]


def objective(estimator: Callable, logp_NxT, signals: Signals,
              discount: float, dice_lambda: float = 1.0,
              logp_ref_NxT: Optional[jax.Array] = None):
  """One task's objective: the estimator summed over trajectories, divided
  by the number of steps taken (rllab's mean over all steps)."""
  per_trajectory_N = estimator(logp_NxT, signals, discount,
                               logp_ref_NxT=logp_ref_NxT,
                               dice_lambda=dice_lambda)
  count = jax.lax.stop_gradient(jnp.maximum(jnp.sum(signals.mask), 1.0))
  return jnp.sum(per_trajectory_N) / count
