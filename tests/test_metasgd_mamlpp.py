"""Learned inner rates (Meta-SGD, MAML++): float64 meta-gradients and annealing."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

import metajax as mj
from algorithm_problems import tanh_params_and_tasks, tiny_sine_config
from metajax.algorithms import mamlpp, metasgd
from metajax.algorithms._rates import init_log_rates
from metajax.backend import PORTABLE
from metajax.tasks.base import Problem
from metajax.training import trainer


def _central_differences(fn, flat, eps=1e-6):
  """(fn(x + eps e_i) - fn(x - eps e_i)) / 2 eps for every i, in one call."""
  shifts = eps * jnp.eye(flat.size, dtype=flat.dtype)
  values = jax.jit(jax.vmap(fn))(jnp.concatenate([flat[None, :] + shifts,
                                                  flat[None, :] - shifts]))
  return np.asarray(values[:flat.size] - values[flat.size:]) / (2 * eps)


def test_metasgd_rate_gradient_matches_central_differences(x64):
  params, loss_fn, tasks = tanh_params_and_tasks()
  meta = {"params": params, "log_lr": init_log_rates(params, 0.3)}
  # Spread the rates so every entry's rate matters differently.
  flat_rates, unravel_rates = jax.flatten_util.ravel_pytree(meta["log_lr"])
  meta["log_lr"] = unravel_rates(
      flat_rates + 0.2 * jnp.sin(jnp.arange(flat_rates.size)))
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=2, learning_rate=0.3)
  objective = lambda m: mj.meta_objective(
      m, tasks, inner, task_loss=metasgd.metasgd_task_loss)[0]
  grads = jax.jit(jax.grad(objective))(meta)
  flat, unravel = jax.flatten_util.ravel_pytree(meta["log_lr"])
  numeric = _central_differences(
      lambda f: objective({"params": params, "log_lr": unravel(f)}), flat)
  analytic, _ = jax.flatten_util.ravel_pytree(grads["log_lr"])
  assert np.max(np.abs(analytic)) > 1e-4
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_metasgd_evaluation_adapts_with_the_learned_rates():
  config = tiny_sine_config(algorithm="metasgd")
  _, _, problem = trainer.build_problem(config)
  params = problem.init_params(jax.random.key(0))
  meta = metasgd.init_meta_params(config, problem, params)
  meta["log_lr"] = jax.tree.map(lambda r: r + 1.0, meta["log_lr"])  # e times
  init, inner = metasgd.eval_adaptation(config, problem, meta)
  support = jax.tree.map(lambda l: l[0], problem.train_sampler(
      jax.random.key(1)).support)
  adapted = jax.jit(lambda p, s: inner.run(p, s, num_steps=1).params)(
      init, support)
  plain = jax.jit(lambda p, s: mj.adapt(
      p, problem.loss_fn, s, 1, learning_rate=config.inner.lr * np.e).params)(
          params, support)
  for a, b in zip(jax.tree.leaves(adapted), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_msl_weights_anneal_from_uniform_to_the_last_step():
  np.testing.assert_allclose(mamlpp.msl_weights(0, 4, 100), [0.25] * 4)
  np.testing.assert_allclose(mamlpp.msl_weights(50, 4, 100),
                             [0.125, 0.125, 0.125, 0.625])
  np.testing.assert_allclose(mamlpp.msl_weights(500, 4, 100), [0, 0, 0, 1])
  np.testing.assert_allclose(mamlpp.msl_weights(0, 4, 0), [0, 0, 0, 1])


def _mamlpp_objective(meta, tasks, inner, step, anneal, first_order):
  weights = mamlpp.msl_weights(step, inner.num_steps, anneal)
  losses = jax.vmap(lambda t: mamlpp.mamlpp_task_loss(
      meta, t, inner, weights, first_order)[0])(tasks)
  return jnp.mean(losses)


def test_mamlpp_per_step_rate_gradient_matches_central_differences(x64):
  params, loss_fn, tasks = tanh_params_and_tasks()
  meta = {"params": params,
          "log_lr": init_log_rates(params, 0.3, num_steps=2)}
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=2, learning_rate=0.3)
  objective = lambda m: _mamlpp_objective(m, tasks, inner, 3, 10, False)
  grads = jax.jit(jax.grad(objective))(meta)
  assert jax.tree.leaves(grads["log_lr"])[0].shape == (2,)
  flat, unravel = jax.flatten_util.ravel_pytree(meta["log_lr"])
  numeric = _central_differences(
      lambda f: objective({"params": params, "log_lr": unravel(f)}), flat)
  analytic, _ = jax.flatten_util.ravel_pytree(grads["log_lr"])
  assert np.all(np.abs(analytic) > 0)  # every tensor's rate at every step
  np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_mamlpp_derivative_order_switches_at_first_order_until(x64):
  config = tiny_sine_config({
      "algorithm": "mamlpp", "inner.steps": 2, "inner.lr": 0.3,
      "algorithm.first_order_until": 5, "algorithm.msl_anneal_steps": 10})
  params, loss_fn, tasks = tanh_params_and_tasks()
  problem = Problem(kind="regression", model=None, init_params=None,
                    loss_fn=loss_fn, metric_fn=None, train_sampler=None,
                    evaluate=None, eval_tasks=None, formulations=PORTABLE)
  meta = mamlpp.init_meta_params(config, problem, params)
  meta_grad_fn = mamlpp.make_meta_grad(config, problem)
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=2, learning_rate=0.3)
  grad_fn = jax.jit(meta_grad_fn)
  expected_fn = jax.jit(jax.grad(
      lambda m, step, first_order: _mamlpp_objective(
          m, tasks, inner, step, 10, first_order)), static_argnums=2)
  # The meta-step gives every meta_grad_fn its state's step (no opt-in
  # attribute): the update from a state at `step` is the gradient there.
  outer = optax.sgd(1.0)
  meta_step = mj.make_meta_step(meta_grad_fn, outer)
  for step, first_order in ((4, True), (5, False)):
    grads, metrics = grad_fn(meta, tasks, jax.random.key(0), jnp.int32(step))
    expected = expected_fn(meta, jnp.int32(step), first_order)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(metrics["msl_last_weight"],
                               0.5 + 0.5 * step / 10, rtol=1e-6)
    state = mj.init_meta_state(meta, outer, jax.random.key(0))._replace(
        step=jnp.int32(step))
    stepped, step_metrics = meta_step(state, tasks)
    np.testing.assert_allclose(step_metrics["msl_last_weight"],
                               0.5 + 0.5 * step / 10, rtol=1e-6)
    for p, new, b in zip(jax.tree.leaves(meta), jax.tree.leaves(stepped.params),
                         jax.tree.leaves(expected)):
      np.testing.assert_allclose(p - new, b, rtol=1e-10, atol=1e-12)
  first = expected_fn(meta, jnp.int32(5), True)
  gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in
            zip(jax.tree.leaves(grads), jax.tree.leaves(first)))
  assert gap > 1e-6  # the two orders really differ
