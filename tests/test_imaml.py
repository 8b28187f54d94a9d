"""iMAML: the implicit meta-gradient against closed forms; flat memory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from algorithm_problems import tanh_params_and_tasks, tiny_sine_config
from metajax.algorithms import imaml
from metajax.core.linear_solve import conjugate_gradient
from metajax.settings import ConfigError
from metajax.training import trainer

LAM = 2.0
STEP = jnp.zeros((), jnp.int32)  # every meta_grad_fn is given the step


def _linear_tasks(num_tasks=3, n=7, d=3, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  return mj.TaskBatch(
      (jax.random.normal(keys[0], (num_tasks, n, d)),
       jax.random.normal(keys[1], (num_tasks, n))),
      (jax.random.normal(keys[2], (num_tasks, n, d)),
       jax.random.normal(keys[3], (num_tasks, n))))


def _linear_loss(params, batch):
  x, y = batch
  return jnp.mean(jnp.square(x @ params["w"] - y))


def _closed_form(theta, tasks, lam, damping=0.0):
  """Mean over tasks of d Lq(phi*)/d theta = (I + A/lam)^-1 grad Lq(phi*),
  or with CG damping ((1 + damping) I + A/lam)^-1 grad Lq(phi*).

  Support loss |X phi - y|^2 / n = phi^T A phi / 2 - b^T phi + const with
  A = 2 X^T X / n, b = 2 X^T y / n; phi* = (A + lam I)^-1 (b + lam theta).
  """
  grads = []
  for t in range(tasks.support[0].shape[0]):
    xs, ys = np.asarray(tasks.support[0][t]), np.asarray(tasks.support[1][t])
    xq, yq = np.asarray(tasks.query[0][t]), np.asarray(tasks.query[1][t])
    a_s, b_s = 2 * xs.T @ xs / len(ys), 2 * xs.T @ ys / len(ys)
    a_q, b_q = 2 * xq.T @ xq / len(yq), 2 * xq.T @ yq / len(yq)
    regularised = a_s + lam * np.eye(len(theta))
    phi = np.linalg.solve(regularised, b_s + lam * theta)
    system = (1 + damping) * np.eye(len(theta)) + a_s / lam
    grads.append(np.linalg.solve(system, a_q @ phi - b_q))
  return np.mean(grads, axis=0)


def test_implicit_gradient_matches_closed_form_and_unrolled(x64):
  tasks, theta = _linear_tasks(), np.array([0.3, -0.2, 0.5])
  inner = mj.InnerLoop(loss_fn=_linear_loss, num_steps=300, learning_rate=0.1)
  grads, metrics = jax.jit(imaml.imaml_meta_grad(inner, LAM, cg_steps=6))(
      {"w": jnp.asarray(theta)}, tasks, jax.random.key(0), STEP)
  np.testing.assert_allclose(grads["w"], _closed_form(theta, tasks, LAM),
                             rtol=1e-9, atol=1e-12)
  # The exact meta-gradient of the (converged) proximal inner loop, by
  # differentiating through all of its steps.
  proximal_loss = lambda phi, theta_, batch: (
      _linear_loss(phi, batch)
      + LAM / 2 * jnp.sum(jnp.square(phi["w"] - theta_["w"])))

  def unrolled(theta_):
    def one(task):
      phi = mj.adapt(theta_, lambda p, b: proximal_loss(p, theta_, b),
                     task.support, 300, learning_rate=0.1).params
      return _linear_loss(phi, task.query)
    return jnp.mean(jax.vmap(one)(tasks))

  exact = jax.jit(jax.grad(unrolled))({"w": jnp.asarray(theta)})
  np.testing.assert_allclose(grads["w"], exact["w"], rtol=1e-9, atol=1e-12)
  assert metrics["support_loss_end"] < metrics["support_loss_start"]
  assert metrics["proximal_grad_norm"] < 1e-10
  assert metrics["cg_not_positive_definite"] == 0


def test_cg_damping_solves_the_damped_system(x64):
  tasks, theta = _linear_tasks(), np.array([0.3, -0.2, 0.5])
  inner = mj.InnerLoop(loss_fn=_linear_loss, num_steps=300, learning_rate=0.1)
  meta_grad = imaml.imaml_meta_grad(inner, LAM, cg_steps=6, cg_damping=0.5)
  grads, _ = jax.jit(meta_grad)({"w": jnp.asarray(theta)}, tasks,
                                jax.random.key(0), STEP)
  damped = _closed_form(theta, tasks, LAM, damping=0.5)
  np.testing.assert_allclose(grads["w"], damped, rtol=1e-9, atol=1e-12)
  assert not np.allclose(grads["w"], _closed_form(theta, tasks, LAM),
                         rtol=1e-3)


def test_implicit_gradient_matches_unrolled_on_converged_tanh_mlp(x64):
  # The paper's lambda; the inner problem solved to a proximal-gradient
  # norm below 1e-6, where the implicit gradient is the exact one.
  params, loss_fn, tasks = tanh_params_and_tasks()
  lam, steps, lr = 1.0, 800, 0.05
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=steps, learning_rate=lr)
  grads, metrics = jax.jit(imaml.imaml_meta_grad(inner, lam, cg_steps=40))(
      params, tasks, jax.random.key(0), STEP)
  assert metrics["proximal_grad_norm"] < 1e-6, metrics["proximal_grad_norm"]
  assert metrics["cg_not_positive_definite"] == 0

  def unrolled(theta):  # differentiate through the converged proximal loop
    def one(task):
      proximal_loss = lambda p, b: loss_fn(p, b) + lam / 2 * sum(
          jnp.sum(jnp.square(a - t)) for a, t in
          zip(jax.tree.leaves(p), jax.tree.leaves(theta)))
      phi = mj.adapt(theta, proximal_loss, task.support, steps,
                     learning_rate=lr).params
      return loss_fn(phi, task.query)
    return jnp.mean(jax.vmap(one)(tasks))

  exact = jax.jit(jax.grad(unrolled))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(exact)):
    np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_conjugate_gradient_solves_spd_system(x64):
  rng = np.random.default_rng(0)
  m = rng.normal(size=(5, 5))
  a = m @ m.T + np.eye(5)
  b = {"u": jnp.asarray(rng.normal(size=3)), "v": jnp.asarray(rng.normal(size=2))}
  flat = lambda t: jnp.concatenate([t["u"], t["v"]])
  matvec = lambda t: (lambda y: {"u": y[:3], "v": y[3:]})(jnp.asarray(a) @ flat(t))
  x, indefinite = conjugate_gradient(matvec, b, num_steps=8)  # > 5
  np.testing.assert_allclose(flat(x), np.linalg.solve(a, flat(b)), rtol=1e-9)
  assert not indefinite


def test_conjugate_gradient_stops_at_negative_curvature(x64):
  # diag(1, -1): the first direction b = (1, 1) has zero curvature, so CG
  # flags the system and keeps x = 0 instead of dividing by zero.
  matvec = lambda x: {"u": x["u"] * jnp.array([1.0, -1.0])}
  x, indefinite = conjugate_gradient(
      matvec, {"u": jnp.array([1.0, 1.0])}, num_steps=4)
  assert indefinite
  np.testing.assert_array_equal(x["u"], [0.0, 0.0])
  # diag(2, -1) with b = (1, 0.1): a first positive step, then the residual
  # direction meets the negative eigenvalue; the first iterate is kept.
  matvec = lambda x: {"u": x["u"] * jnp.array([2.0, -1.0])}
  b = jnp.array([1.0, 0.1])
  x, indefinite = conjugate_gradient(matvec, {"u": b}, num_steps=4)
  first = (b @ b) / (b @ (b * jnp.array([2.0, -1.0]))) * b
  assert indefinite
  assert np.all(np.isfinite(x["u"]))
  np.testing.assert_allclose(x["u"], first, rtol=1e-12)


def _temp_bytes(algorithm, inner_steps):
  config = tiny_sine_config(algorithm=algorithm, inner__steps=inner_steps,
                            model__hidden_sizes=(32,),
                            outer__meta_batch_size=2)
  found, _, problem = trainer.build_problem(config)
  assert found.name == algorithm
  # Compiled for abstract arguments: only the shapes matter here.
  params = jax.eval_shape(problem.init_params, jax.random.key(0))
  tasks = jax.eval_shape(problem.train_sampler, jax.random.key(1))
  compiled = jax.jit(found.make_meta_grad(config, problem)).lower(
      params, tasks, jax.random.key(2), STEP).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_memory_does_not_grow_with_inner_steps():
  imaml_short, imaml_long = _temp_bytes("imaml", 2), _temp_bytes("imaml", 20)
  maml_short, maml_long = _temp_bytes("maml", 2), _temp_bytes("maml", 20)
  assert imaml_long <= 1.05 * imaml_short, (imaml_short, imaml_long)
  assert maml_long > 3 * maml_short, (maml_short, maml_long)


def test_line_search_solves_where_the_fixed_rate_diverges(x64):
  # Support curvature 2 |x|^2 / n far above 2 / rate: fixed-rate proximal
  # steps grow without bound, the searched ones descend the proximal loss
  # to its closed-form minimiser, and the implicit gradient is then exact.
  tasks, theta = _linear_tasks(), np.array([0.3, -0.2, 0.5])
  tasks = mj.TaskBatch((3.0 * tasks.support[0], tasks.support[1]),
                       tasks.query)
  params = {"w": jnp.asarray(theta)}
  fixed = mj.InnerLoop(loss_fn=_linear_loss, num_steps=60, learning_rate=0.5)
  _, diverging = jax.jit(imaml.imaml_meta_grad(fixed, LAM, cg_steps=6))(
      params, tasks, jax.random.key(0), STEP)
  assert not diverging["support_loss_end"] < diverging["support_loss_start"]

  grads, metrics = jax.jit(imaml.imaml_meta_grad(
      fixed, LAM, cg_steps=6, line_search=True))(
          params, tasks, jax.random.key(0), STEP)
  assert metrics["proximal_grad_norm"] < 1e-6, metrics["proximal_grad_norm"]
  np.testing.assert_allclose(grads["w"], _closed_form(theta, tasks, LAM),
                             rtol=1e-6, atol=1e-9)


def test_line_search_steps_never_raise_the_proximal_loss(x64):
  params, loss_fn, tasks = tanh_params_and_tasks()
  task = jax.tree.map(lambda leaf: leaf[0], tasks)
  optimizer = imaml.proximal(params, LAM, optax.sgd(20.0),
                             line_search=True)
  record = lambda p: loss_fn(p, task.support) + LAM / 2 * sum(
      jnp.sum(jnp.square(a - t)) for a, t in
      zip(jax.tree.leaves(p), jax.tree.leaves(params)))
  result = mj.adapt(params, loss_fn, task.support, 30,
                    inner_optimizer=optimizer, per_step_fn=record)
  curve = np.concatenate([[record(params)], np.asarray(result.per_step)])
  assert np.all(np.diff(curve) <= 1e-9 * curve[0]), curve
  fixed = mj.adapt(params, loss_fn, task.support, 30,
                   inner_optimizer=imaml.proximal(params, LAM,
                                                  optax.sgd(20.0)),
                   per_step_fn=record)
  assert not np.all(np.diff(np.asarray(fixed.per_step)) <= 0)
  assert curve[-1] < 0.9 * curve[0]


def test_eval_line_search_on_imaml_is_refused():
  config = tiny_sine_config({"algorithm": "imaml", "eval.line_search": True})
  with pytest.raises(ConfigError, match="algorithm.line_search"):
    trainer.build_run(config)
