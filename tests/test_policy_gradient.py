"""Policy-gradient estimators against exact answers (float64).

Expectations are exact, not sampled: a one-step Gaussian bandit is
integrated with Gauss-Hermite quadrature (the integrands are polynomials),
and a three-step chain's eight trajectories are enumerated. An estimator's
expected derivatives of every order are those of
`sum_tau stop(p(tau)) * estimator(tau)`, the probabilities held at the
sampling policy, which is what averaging the estimator over samples
converges to.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.core import policy_gradient as pg

EXACT = ("dice", "loaded_dice")


# ------------------------------------------------------------ primitives
def test_returns_gae_and_baseline_match_numpy_loops(x64):
  rng = np.random.default_rng(0)
  rewards, values = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
  mask = np.ones((3, 6))
  mask[1, 4:] = 0.0  # trajectory 1 ended after 4 steps
  gamma, lam = 0.9, 0.8
  returns, advantages = np.zeros_like(rewards), np.zeros_like(rewards)
  for n in range(3):
    length = int(mask[n].sum())
    running, adv = 0.0, 0.0
    for t in reversed(range(length)):
      running = rewards[n, t] + gamma * running
      returns[n, t] = running
      next_value = values[n, t + 1] if t + 1 < length else 0.0
      delta = rewards[n, t] + gamma * next_value - values[n, t]
      adv = delta + gamma * lam * adv
      advantages[n, t] = adv
  np.testing.assert_allclose(pg.discounted_returns(rewards, mask, gamma),
                             returns, rtol=1e-12)
  np.testing.assert_allclose(pg.gae(rewards, values, mask, gamma, lam),
                             advantages, rtol=1e-12, atol=1e-12)
  obs = rng.normal(size=(3, 6, 2))
  features = np.asarray(pg.baseline_features(obs))
  t = np.arange(6) / 100.0
  np.testing.assert_allclose(features[2, 5], np.concatenate(
      [obs[2, 5], obs[2, 5] ** 2, [t[5], t[5] ** 2, t[5] ** 3, 1.0]]))
  fitted = pg.fit_linear_baseline(features, returns, mask, ridge=1e-5)
  f, y = features[mask > 0], returns[mask > 0]
  coef = np.linalg.solve(f.T @ f + 1e-5 * np.eye(f.shape[1]), f.T @ y)
  np.testing.assert_allclose(fitted, (features @ coef) * mask, rtol=1e-8,
                             atol=1e-10)


@pytest.mark.parametrize("seed", [76, 111])
def test_baseline_fit_with_collinear_features_is_accurate_in_float32(seed):
  """A goal observed with the position is constant within a task, so its
  features are collinear with the constant one and the ridge of 1e-5 is
  below float32's resolution of the normal equations: the fit must still
  match the float64 ridge fit (on these two data sets an LU solve was off
  by 1e-2 and non-finite)."""
  rng = np.random.default_rng(seed)
  position = np.cumsum(rng.normal(scale=0.05, size=(20, 100, 2)), axis=1)
  goal = rng.uniform(-0.5, 0.5, size=2)
  obs = np.concatenate([position, np.broadcast_to(goal, position.shape)],
                       axis=-1).astype(np.float32)
  rewards = -np.linalg.norm(position - goal, axis=-1).astype(np.float32)
  mask = np.ones((20, 100), np.float32)
  returns = pg.discounted_returns(rewards, mask, 0.99)
  features = pg.baseline_features(jnp.asarray(obs))
  fitted = np.asarray(jax.jit(pg.fit_linear_baseline)(features, returns,
                                                      mask))
  f = np.asarray(features, np.float64).reshape(-1, 12)
  y = np.asarray(returns, np.float64).reshape(-1)
  coef = np.linalg.solve(f.T @ f + 1e-5 * np.eye(12), f.T @ y)
  assert np.all(np.isfinite(fitted))
  np.testing.assert_allclose(fitted, (f @ coef).reshape(20, 100), atol=2e-3)


def test_loaded_dice_at_lambda_one_is_dice_with_baseline_in_every_order(x64):
  """Farquhar et al.'s identity: with exact (lambda=1) advantages, loaded
  DiCE and Mao et al.'s DiCE differ by a constant (the discounted return:
  loaded DiCE's value is 0), so their derivatives agree in every order."""
  rng = np.random.default_rng(1)
  rewards, values = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
  mask = np.ones((2, 5))
  mask[0, 3:] = 0.0
  signals = pg.Signals(rewards * mask, values * mask,
                       pg.gae(rewards * mask, values, mask, 0.9, 1.0), mask)
  direction = jnp.asarray(rng.normal(size=(2, 5)))
  logp0 = jnp.asarray(rng.normal(size=(2, 5)))
  along = lambda est: (lambda x: jnp.sum(
      est(logp0 + x * direction, signals, 0.9)))
  assert float(along(pg.loaded_dice)(0.0)) == 0.0
  np.testing.assert_allclose(along(pg.dice)(0.0),
                             np.sum(0.9 ** np.arange(5) * rewards * mask),
                             rtol=1e-12)
  for order in (1, 2, 3):
    derivative = lambda f: f
    for _ in range(order):
      derivative = (lambda d: lambda f: jax.grad(d(f)))(derivative)
    np.testing.assert_allclose(derivative(along(pg.loaded_dice))(0.0),
                               derivative(along(pg.dice))(0.0), rtol=1e-10,
                               err_msg=f"order {order}")


# ------------------------------------------------- one-step Gaussian bandit
GOAL, BASELINE = 0.7, -0.4


def bandit_expected(estimator, theta0, nodes=12):
  """`theta -> E_{a ~ pi_theta0}[estimator]`, a ~ N(mu, exp(2 s)), reward
  -(a - GOAL)^2, a constant baseline; exact by Gauss-Hermite quadrature."""
  z, w = np.polynomial.hermite_e.hermegauss(nodes)
  w = w / w.sum()
  mu0, s0 = theta0
  actions = jnp.asarray(mu0 + np.exp(s0) * z)[:, None]
  rewards = -(actions - GOAL) ** 2
  values = jnp.full_like(rewards, BASELINE)
  signals = pg.Signals(rewards, values, rewards - values,
                       jnp.ones_like(rewards))

  def expected(theta):
    mu, s = theta[0], theta[1]
    logp = (-0.5 * ((actions - mu) / jnp.exp(s)) ** 2 - s
            - 0.5 * jnp.log(2 * jnp.pi))
    return jnp.sum(jnp.asarray(w) * estimator(logp, signals, 1.0))

  return expected


def test_bandit_expected_hessians_dice_lvc_exact_surrogate_not(x64):
  theta0 = jnp.array([0.2, np.log(0.5)])
  exact = np.diag([-2.0, -4.0 * 0.25])  # J = -((mu-g)^2 + exp(2s))
  exact_grad = np.array([-2 * (0.2 - GOAL), -2 * 0.25])
  for name in ("dice", "loaded_dice", "lvc", "surrogate"):
    expected = bandit_expected(pg.get(name), theta0)
    grad, hessian = jax.jit(lambda t: (jax.grad(expected)(t),
                                       jax.hessian(expected)(t)))(theta0)
    np.testing.assert_allclose(grad, exact_grad, rtol=1e-10, err_msg=name)
    if name == "surrogate":
      assert np.max(np.abs(hessian - exact)) > 0.5, hessian
    else:
      np.testing.assert_allclose(hessian, exact, rtol=1e-10, atol=1e-12,
                                 err_msg=name)


def test_bandit_sample_average_converges_to_the_quadrature(x64):
  """The quadrature stands for what sample averages give: 20k sampled
  actions' mean DiCE Hessian is within 4 standard errors of it."""
  mu0, s0 = 0.2, np.log(0.5)
  a = mu0 + 0.5 * jax.random.normal(jax.random.key(0), (20_000, 1),
                                    jnp.float64)
  rewards = -(a - GOAL) ** 2

  def one_sample(theta, a_1, rewards_1):
    logp = -0.5 * ((a_1 - theta[0]) / jnp.exp(theta[1])) ** 2 - theta[1]
    signals = pg.Signals(rewards_1[None], jnp.full((1, 1), BASELINE),
                         rewards_1[None] - BASELINE, jnp.ones((1, 1)))
    return pg.dice(logp[None], signals, 1.0)[0]

  h_Nx2x2 = jax.jit(jax.vmap(jax.hessian(one_sample), (None, 0, 0)))(
      jnp.array([mu0, s0]), a, rewards)
  mean, sem = h_Nx2x2.mean(0), h_Nx2x2.std(0) / np.sqrt(h_Nx2x2.shape[0])
  exact = np.diag([-2.0, -1.0])
  assert np.all(np.abs(mean - exact) <= 4 * sem + 1e-12), (mean, sem)


# ------------------------------------------------- three-step chain MDP
S, A, T, ALPHA = 4, 2, 3, 2.0
RNG = np.random.default_rng(2)
REWARD_SxA = 3.0 * RNG.normal(size=(S, A))
STATE_VALUE_S = RNG.normal(size=S)  # an arbitrary state baseline


def chain_trajectories():
  """All A^T action sequences from state 0; s' = min(s + a, S - 1)."""
  states, actions = [], []
  for seq in itertools.product(range(A), repeat=T):
    s, path = 0, []
    for a in seq:
      path.append(s)
      s = min(s + a, S - 1)
    states.append(path)
    actions.append(seq)
  return np.array(states), np.array(actions)


STATES_NxT, ACTIONS_NxT = chain_trajectories()
REWARDS_NxT = REWARD_SxA[STATES_NxT, ACTIONS_NxT]


def chain_logp(theta_SxA):
  logp_SxA = jax.nn.log_softmax(theta_SxA, axis=-1)
  return logp_SxA[STATES_NxT, ACTIONS_NxT]


def exact_return(theta_SxA):
  p_N = jnp.exp(jnp.sum(chain_logp(theta_SxA), axis=1))
  return jnp.sum(p_N * jnp.sum(REWARDS_NxT, axis=1))


def chain_signals(baseline: bool):
  mask = np.ones((len(STATES_NxT), T))
  values = STATE_VALUE_S[STATES_NxT] if baseline else np.zeros_like(mask)
  return pg.Signals(jnp.asarray(REWARDS_NxT), jnp.asarray(values),
                    pg.gae(REWARDS_NxT, values, mask, 1.0, 1.0),
                    jnp.asarray(mask))


def expected_estimator(name, baseline=True):
  """`theta -> sum_tau stop(p_theta(tau)) * estimator(theta; tau)`."""
  estimator, signals = pg.get(name), chain_signals(baseline)

  def expected(theta):
    logp_NxT = chain_logp(theta)
    p_N = jax.lax.stop_gradient(jnp.exp(jnp.sum(logp_NxT, axis=1)))
    return jnp.sum(p_N * estimator(logp_NxT, signals, 1.0))

  return expected


def maml_objective(inner, outer):
  """One inner ascent step on `inner`, then `outer` at the adapted params."""
  return lambda theta: outer(theta + ALPHA * jax.grad(inner)(theta))


@pytest.fixture(scope="module")
def theta0():
  return np.random.default_rng(3).normal(size=(S, A))


def test_chain_meta_gradients_against_the_exact_maml_objective(x64, theta0):
  """DiCE's and loaded DiCE's meta-gradients are MAML's exactly; the
  surrogate's and LVC's second-order parts are visibly off."""
  theta0 = jnp.asarray(theta0, jnp.float64)

  @jax.jit
  def gradients(theta):
    exact = jax.grad(maml_objective(exact_return, exact_return))(theta)
    adapted = theta + ALPHA * jax.grad(exact_return)(theta)
    first_order = jax.grad(exact_return)(adapted)  # FOMAML's direction
    out = {}
    for name in pg.ESTIMATORS:
      f = expected_estimator(name)
      out[name] = (jax.grad(f)(theta), jax.grad(maml_objective(f, f))(theta))
    return exact, exact - first_order, jax.grad(exact_return)(theta), out

  exact, second_order_part, policy_gradient, estimates = gradients(theta0)
  scale = float(jnp.max(jnp.abs(second_order_part)))
  assert scale > 0.1 * float(jnp.max(jnp.abs(exact)))
  gaps = {}
  for name, (first, meta) in estimates.items():
    np.testing.assert_allclose(first, policy_gradient, rtol=1e-10,
                               atol=1e-12, err_msg=f"{name}: first order")
    gaps[name] = float(jnp.max(jnp.abs(meta - exact)))
    if name in EXACT:
      np.testing.assert_allclose(meta, exact, rtol=1e-9, atol=1e-11,
                                 err_msg=name)
  assert gaps["surrogate"] > 0.2 * scale, (gaps, scale)
  assert gaps["lvc"] > 0.02 * scale, (gaps, scale)


def test_chain_lvc_hessian_misses_exactly_the_cross_step_term(x64, theta0):
  """E[hess LVC] + E[sum_t r_t sum_{k != l <= t} g_k g_l^T] = hess J, with
  g_k the score of step k (no baseline, undiscounted)."""
  theta0 = jnp.asarray(theta0, jnp.float64)
  exact, lvc, dice_hessian, scores = jax.jit(lambda t: (
      jax.hessian(exact_return)(t),
      jax.hessian(expected_estimator("lvc", baseline=False))(t),
      jax.hessian(expected_estimator("dice"))(t),
      jax.jacrev(chain_logp)(t)))(theta0)
  exact, lvc = exact.reshape(S * A, S * A), lvc.reshape(S * A, S * A)
  scores_NxTxP = scores.reshape(len(STATES_NxT), T, S * A)
  p_N = np.exp(np.sum(np.asarray(chain_logp(theta0)), axis=1))
  missing = np.zeros((S * A, S * A))
  for n, t in itertools.product(range(len(p_N)), range(T)):
    for k, l in itertools.product(range(t + 1), repeat=2):
      if k != l:
        missing += (p_N[n] * REWARDS_NxT[n, t]
                    * np.outer(scores_NxTxP[n, k], scores_NxTxP[n, l]))
  assert np.max(np.abs(missing)) > 0.05 * np.max(np.abs(exact))
  np.testing.assert_allclose(lvc + missing, exact, rtol=1e-9, atol=1e-11)
  np.testing.assert_allclose(dice_hessian.reshape(S * A, S * A), exact,
                             rtol=1e-9, atol=1e-11)


def test_unknown_estimator_names_the_choices():
  with pytest.raises(ValueError, match="expected one of"):
    pg.get("reinforce")
