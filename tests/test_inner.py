"""The inner loop: scan equals an unrolled loop; options behave as documented."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from metajax.models import MLP


def _problem(activation="tanh", dtype=jnp.float32):
  model = MLP(hidden_sizes=(8, 8), activation=activation)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), dtype))
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  k1, k2 = jax.random.split(jax.random.key(1))
  support = (jax.random.normal(k1, (6, 1), dtype),
             jax.random.normal(k2, (6, 1), dtype))
  return model, params, mj.mse_loss(model.apply), support


def test_scan_equals_python_unrolled_loop():
  _, params, loss_fn, support = _problem()
  lr, steps = 0.05, 4
  result = mj.adapt(params, loss_fn, support, steps, learning_rate=lr)
  manual, losses = params, []
  for _ in range(steps):
    loss, grads = jax.value_and_grad(loss_fn)(manual, support)
    losses.append(loss)
    manual = jax.tree.map(lambda p, g: p - lr * g, manual, grads)
  for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(manual)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(result.losses, jnp.stack(losses), rtol=1e-5)
  assert result.losses.shape == (steps,)


def _per_task_param_copies(jaxpr, params, num_tasks):
  """Top-level broadcasts of a params-shaped array to one copy per task."""
  param_shapes = {p.shape for p in jax.tree.leaves(params)}
  return [eqn for eqn in jaxpr.jaxpr.eqns
          if eqn.primitive.name == "broadcast_in_dim"
          and eqn.invars[0].aval.shape in param_shapes
          and eqn.outvars[0].aval.shape
          == (num_tasks,) + eqn.invars[0].aval.shape]


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_first_step_outside_scan_keeps_shared_params_unbroadcast(steps):
  # With the first step outside the scan, vmap over tasks does not copy the
  # shared meta-parameters per task before they are first updated; a scan
  # over all steps broadcasts them to start its carry.
  _, params, loss_fn, (x, y) = _problem()
  num_tasks = 5
  batch = (jnp.stack([x] * num_tasks), jnp.stack([y] * num_tasks))

  def adapt_all(outside):
    return jax.vmap(lambda b: mj.adapt(
        params, loss_fn, b, steps, first_step_outside_scan=outside).params)

  for outside, copied in ((True, False), (False, True)):
    jaxpr = jax.make_jaxpr(adapt_all(outside))(batch)
    assert bool(_per_task_param_copies(jaxpr, params, num_tasks)) == copied
  # ... and the per-task results equal those of one task alone.
  single = mj.adapt(params, loss_fn, (x, y), steps).params
  for a, b in zip(jax.tree.leaves(adapt_all(True)(batch)),
                  jax.tree.leaves(single)):
    np.testing.assert_allclose(a, np.broadcast_to(b, a.shape), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("steps,first_order,remat",
                         [(1, False, False), (3, False, True), (2, True, False)])
def test_first_step_outside_scan_changes_no_result(steps, first_order, remat):
  _, params, loss_fn, support = _problem()
  query = jax.tree.map(lambda a: a[::-1], support)

  def meta_loss(p, outside):
    result = mj.adapt(p, loss_fn, support, steps, learning_rate=0.1,
                      first_order=first_order, remat=remat,
                      per_step_fn=lambda q: loss_fn(q, query),
                      first_step_outside_scan=outside)
    return loss_fn(result.params, query), (result.losses, result.per_step)

  (loss_a, aux_a), grad_a = jax.value_and_grad(meta_loss, has_aux=True)(
      params, True)
  (loss_b, aux_b), grad_b = jax.value_and_grad(meta_loss, has_aux=True)(
      params, False)
  assert aux_a[0].shape == aux_a[1].shape == (steps,)
  for a, b in zip(jax.tree.leaves((loss_a, aux_a, grad_a)),
                  jax.tree.leaves((loss_b, aux_b, grad_b))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_zero_steps_returns_params_and_empty_losses():
  _, params, loss_fn, support = _problem()
  result = mj.adapt(params, loss_fn, support, 0)
  assert result.losses.shape == (0,)
  for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_inner_loss_decreases_with_steps():
  _, params, loss_fn, support = _problem()
  result = mj.adapt(params, loss_fn, support, 20, learning_rate=0.1)
  assert result.losses[-1] < result.losses[0]
  assert loss_fn(result.params, support) < result.losses[-1]


def test_remat_gives_identical_meta_gradient():
  _, params, loss_fn, support = _problem()
  def outer(p, remat):
    adapted = mj.adapt(p, loss_fn, support, 3, learning_rate=0.1,
                       remat=remat).params
    return loss_fn(adapted, support)
  g_plain = jax.grad(outer)(params, False)
  g_remat = jax.grad(outer)(params, True)
  for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("unroll", [2, True])
def test_unrolled_scan_gives_the_same_adaptation_and_meta_gradient(unroll):
  _, params, loss_fn, support = _problem()
  def outer(p, unroll):
    result = mj.adapt(p, loss_fn, support, 5, learning_rate=0.1,
                      unroll=unroll)
    return loss_fn(result.params, support), result.losses
  (loss_rolled, losses_rolled), g_rolled = jax.value_and_grad(
      outer, has_aux=True)(params, 1)
  (loss_unrolled, losses_unrolled), g_unrolled = jax.value_and_grad(
      outer, has_aux=True)(params, unroll)
  np.testing.assert_allclose(loss_unrolled, loss_rolled, rtol=1e-5)
  np.testing.assert_allclose(losses_unrolled, losses_rolled, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_rolled), jax.tree.leaves(g_unrolled)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_per_step_fn_is_stacked_after_each_step():
  _, params, loss_fn, support = _problem()
  result = mj.adapt(params, loss_fn, support, 3, learning_rate=0.1,
                    per_step_fn=lambda p: loss_fn(p, support))
  assert result.per_step.shape == (3,)
  np.testing.assert_allclose(result.per_step[:-1], result.losses[1:], rtol=1e-5)
  np.testing.assert_allclose(result.per_step[-1], loss_fn(result.params, support),
                             rtol=1e-5)


def test_adam_inner_optimizer_gives_finite_meta_gradients():
  # eps_root > 0 keeps d sqrt(v) finite where a gradient entry is exactly zero
  # (dead ReLUs); metajax's "adam" inner optimizer sets it. Plain optax.adam
  # (eps_root=0) gives NaN meta-gradients here, which this test also pins.
  _, params, loss_fn, support = _problem(activation="relu")
  def outer(p, optimizer):
    adapted = mj.adapt(p, loss_fn, support, 3, inner_optimizer=optimizer).params
    return loss_fn(adapted, support)
  grads = jax.grad(outer)(params, mj.differentiable_adam(0.01))
  assert bool(mj.tree_is_finite(grads))
  assert float(optax.tree.norm(grads)) > 0
  naive = jax.grad(outer)(params, optax.adam(0.01))
  assert not bool(mj.tree_is_finite(naive))


@pytest.mark.parametrize("steps,rate,error", [
    (-1, 0.1, ValueError), (1.5, 0.1, TypeError), (1, -0.1, ValueError),
    (1, float("nan"), ValueError)])
def test_bad_inner_settings_raise_naming_the_field(steps, rate, error):
  _, params, loss_fn, support = _problem()
  with pytest.raises(error, match="num_steps|learning_rate"):
    mj.adapt(params, loss_fn, support, steps, learning_rate=rate)


def test_pre_metrics_off_drops_them_and_keeps_the_meta_gradient():
  model, params, loss_fn, _ = _problem()
  keys = jax.random.split(jax.random.key(4), 4)
  shape = (3, 6, 1)
  tasks = mj.TaskBatch(
      (jax.random.normal(keys[0], shape), jax.random.normal(keys[1], shape)),
      (jax.random.normal(keys[2], shape), jax.random.normal(keys[3], shape)))
  grads, metrics = {}, {}
  for pre in (True, False):
    inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=2, learning_rate=0.1,
                         pre_metrics=pre)
    (_, metrics[pre]), grads[pre] = jax.value_and_grad(
        mj.meta_objective, has_aux=True)(params, tasks, inner)
  assert "pre_loss" in metrics[True] and "pre_loss" not in metrics[False]
  np.testing.assert_array_equal(metrics[True]["post_loss"],
                                metrics[False]["post_loss"])
  for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
