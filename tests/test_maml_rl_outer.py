"""MAML-RL's outer steps: ProMP's clipped objective (float64 meta-gradient,
clipping, one compilation, its Adam state in the meta-params), TRPO's
early-stopping line search against the evaluate-every-fraction one it
replaced, the pretrained baseline, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.algorithms import maml_rl, rl_outer
from metajax.core import policy_gradient as pg
from metajax.settings import ConfigError
from metajax.training import trainer as train
from metajax.training.config import override
from test_navigation import tiny_config

SMALL = {"algorithm.trajectories": 3, "task.horizon": 6,
         "model.hidden_sizes": (5,), "outer.meta_batch_size": 2}
PROMP = {"algorithm.outer_step": "promp", "outer.optimizer": "sgd",
         "outer.lr": 1.0}


def test_promp_gradient_at_ratio_one_is_the_lvc_meta_gradient(x64):
  """At the sampling parameters every ratio is 1 (inside the clip) and the
  pre-update KL is at its minimum, so ProMP's objective has LVC's
  meta-gradient, second-order part included."""
  config = override(tiny_config(), {**PROMP, **SMALL,
                                    "model.activation": "tanh"})
  _, _, problem = train.build_problem(config)
  parts = maml_rl._Parts(config, problem)  # pylint: disable=protected-access
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                        problem.init_params(jax.random.key(0)))
  tasks = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64),
                       problem.train_sampler(jax.random.key(1)))

  @jax.jit
  def gradients(params):
    batch = parts.rollouts(params, tasks, jax.random.key(2))
    refs = rl_outer.promp_refs(parts, params, batch)
    kl_coeff = jnp.full((1,), config.algorithm.promp_kl_coeff)
    promp = jax.grad(lambda p: rl_outer.promp_objective(
        parts, config.algorithm, p, batch, refs, kl_coeff)[0])(params)
    lvc = jax.grad(parts.meta_objective)(params, batch)
    return promp, lvc, batch

  promp, lvc, batch = gradients(params)
  assert batch.query.actions.dtype == jnp.float64
  flat = lambda tree: jax.flatten_util.ravel_pytree(tree)[0]
  assert float(jnp.max(jnp.abs(flat(lvc)))) > 1e-3
  np.testing.assert_allclose(flat(promp), flat(lvc), rtol=1e-9, atol=1e-12)


def test_clipped_ratio_stops_the_gradient_only_past_the_clip_in_its_favour(
    x64):
  """d/dlog pi of min(r A, clip(r) A) is r A, except 0 where the ratio has
  already moved past the clip in the direction the advantage favours."""
  eps = 0.2
  ratios = np.array([0.5, 0.9, 1.0, 1.1, 1.5])
  logp_ref = jnp.zeros((2, 5))
  logp = jnp.log(jnp.asarray(np.stack([ratios, ratios])))
  advantages = jnp.asarray([[1.0] * 5, [-1.0] * 5])
  signals = pg.Signals(advantages, jnp.zeros_like(advantages), advantages,
                       jnp.ones_like(advantages))
  grad = jax.grad(lambda x: jnp.sum(pg.clipped_ratio(
      x, signals, logp_ref, eps)))(logp)
  expected = np.stack([ratios * 1.0, ratios * -1.0])
  expected[0, 4] = 0.0  # A > 0 and r > 1 + eps: no further increase
  expected[1, 0] = 0.0  # A < 0 and r < 1 - eps: no further decrease
  np.testing.assert_allclose(grad, expected, rtol=1e-12)
  value = pg.clipped_ratio(logp, signals, logp_ref, eps)
  np.testing.assert_allclose(value, [0.5 + 0.9 + 1 + 1.1 + 1.2,
                                     -(0.8 + 0.9 + 1 + 1.1 + 1.5)],
                             rtol=1e-12)


def test_promp_step_compiles_once_and_moves_the_policy():
  config = override(tiny_config(outer__steps_per_call=1, run__log_every=1),
                    {**PROMP, **SMALL, "algorithm.promp_steps": 3})
  run = train.build_run(config)
  start = jax.tree.map(np.asarray, run.state.params)
  state = run.state
  for _ in range(2):
    state, _, metrics = run.call(state, None)
  assert run.step_fn.cache_size() == 1
  assert int(state.nonfinite_count) == 0
  promp_state = state.params["promp_state"]
  assert float(promp_state["count"]) == 6.0  # 2 meta-iterations x 3 steps
  np.testing.assert_allclose(promp_state["kl_coeff"],
                             [config.algorithm.promp_kl_coeff], rtol=1e-7)
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(start["policy"]),
      jax.tree.leaves(jax.tree.map(np.asarray, state.params["policy"]))))
  assert 1e-4 < moved < 6 * 3e-3  # Adam moves about lr per step at most
  assert np.isfinite(float(metrics["promp_clipped_objective"]))
  assert float(metrics["promp_inner_kl"]) >= 0.0
  policy = maml_rl.policy_params(config, state.params)
  assert (jax.tree.structure(policy)
          == jax.tree.structure(run.problem.init_params(jax.random.key(0))))


def test_adaptive_kl_coefficient_halves_under_and_doubles_over_target():
  coeff = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0])
  kl = jnp.array([0.001, 0.0067, 0.01, 0.0149, 0.016])  # target 0.01
  np.testing.assert_allclose(rl_outer.adapt_kl_coeff(coeff, kl, 0.01),
                             [0.5, 1.0, 1.0, 1.0, 2.0])


@pytest.mark.parametrize("target,factor", [(1e3, 0.25), (1e-12, 4.0)])
def test_adaptive_kl_coefficients_move_per_inner_step_across_iterations(
    target, factor):
  """Two meta-iterations of ProMP with two inner steps: each step's
  coefficient is halved twice when the inner KL is far under the target,
  doubled twice when far over; they live in the meta-params."""
  config = override(tiny_config(outer__steps_per_call=1, run__log_every=1),
                    {**PROMP, **SMALL, "algorithm.promp_steps": 2,
                     "inner.steps": 2, "algorithm.promp_adaptive_kl": True,
                     "algorithm.promp_kl_target": target})
  run = train.build_run(config)
  state = run.state
  for _ in range(2):
    state, _, metrics = run.call(state, None)
  assert int(state.nonfinite_count) == 0
  coeff = np.asarray(state.params["promp_state"]["kl_coeff"])
  np.testing.assert_allclose(
      coeff, [factor * config.algorithm.promp_kl_coeff] * 2, rtol=1e-6)
  assert 0.0 < float(metrics["promp_inner_kl"]) < 1e-3


def scan_line_search(evaluate, num_steps, max_kl):
  """The line search TRPO had before: every fraction evaluated by a scan,
  the first acceptable one chosen."""
  fractions = 0.5 ** jnp.arange(num_steps, dtype=jnp.float32)
  gains, kls = jax.lax.map(evaluate, fractions)
  ok = (gains > 0) & (kls <= max_kl) & jnp.isfinite(gains)
  return (jnp.where(jnp.any(ok), fractions[jnp.argmax(ok)], 0.0),
          jnp.where(jnp.any(ok), kls[jnp.argmax(ok)], 0.0))


@pytest.mark.parametrize("curvature,kl_scale,expected_tried", [
    (0.1, 0.001, 1),   # the full step is accepted
    (1.5, 0.001, 2),   # overshoots: the surrogate only improves at 1/2
    (0.1, 0.05, 3),    # the KL bound holds from 1/4 on
    (50.0, 0.001, 6),  # improves only at 1/64 (the 7th), past the 6 tried
])
def test_line_search_stops_early_with_the_old_result(curvature, kl_scale,
                                                     expected_tried):
  evaluate = lambda f: (f * (1.0 - curvature * f), kl_scale * f * f)
  fraction, kl, tried = jax.jit(lambda: rl_outer.backtracking_line_search(
      evaluate, 6, 0.01))()
  old_fraction, old_kl = jax.jit(lambda: scan_line_search(evaluate, 6,
                                                          0.01))()
  assert float(fraction) == float(old_fraction)
  assert float(kl) == float(old_kl)
  assert int(tried) == expected_tried
  if expected_tried == 6:
    assert float(fraction) == 0.0


def test_pretrain_step_is_the_plain_policy_gradient_of_the_start():
  config = override(tiny_config(algorithm__pretrain=True), SMALL)
  _, _, problem = train.build_problem(config)
  parts = maml_rl._Parts(config, problem)  # pylint: disable=protected-access
  params = problem.init_params(jax.random.key(0))
  tasks = problem.train_sampler(jax.random.key(1))
  key = jax.random.key(2)

  @jax.jit
  def both(params):
    grads, metrics = maml_rl.make_meta_grad(config, problem)(params, tasks,
                                                             key, 0)
    goals = tasks.support
    trajectories = jax.vmap(parts.sample, (None, 0, 0))(
        params, goals, jax.random.split(key, goals.shape[0]))
    signals = jax.vmap(parts.signals)(trajectories)
    direct = jax.grad(lambda p: jnp.mean(jax.vmap(
        parts.objective, (None, 0, 0))(p, trajectories, signals)))(params)
    return grads, direct, metrics

  grads, direct, metrics = both(params)
  for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direct)):
    np.testing.assert_allclose(g, -d, rtol=1e-6, atol=1e-8)
  assert "post_return" not in metrics and np.isfinite(
      float(metrics["pre_return"]))


@pytest.mark.parametrize("changes,field", [
    ({"algorithm.outer_step": "promp"}, "outer.optimizer"),
    ({**PROMP, "algorithm.estimator": "dice"}, "algorithm.estimator"),
    ({**PROMP, "algorithm.clip_eps": 1.5}, "algorithm.clip_eps"),
    ({**PROMP, "algorithm.promp_steps": 0}, "algorithm.promp_steps"),
    ({"algorithm.pretrain": True, "algorithm.outer_step": "trpo",
      "outer.optimizer": "sgd", "outer.lr": 1.0}, "algorithm.outer_step"),
])
def test_bad_outer_settings_name_the_field(changes, field):
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    train.build_problem(override(tiny_config(), changes))
