"""Meta-gradients against closed forms and float64 central differences."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from metajax.models import MLP


def _linear_tasks(num_tasks=3, n=7, d=3, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  xs = jax.random.normal(keys[0], (num_tasks, n, d))
  ys = jax.random.normal(keys[1], (num_tasks, n))
  xq = jax.random.normal(keys[2], (num_tasks, n, d))
  yq = jax.random.normal(keys[3], (num_tasks, n))
  return mj.TaskBatch((xs, ys), (xq, yq))


def _linear_loss(params, batch):
  x, y = batch
  return jnp.mean(jnp.square(x @ params["w"] - y))


def _closed_form_maml_grad(w, tasks, lr, steps, first_order):
  """d/dw of mean_t Lq_t(w_k) for gradient descent on squared loss.

  With L(w) = |Xw - y|^2 / n: grad = A w - b, A = 2 X^T X / n,
  b = 2 X^T y / n, so a step is w <- (I - lr A_s) w + lr b_s, and
  dLq(w_k)/dw = ((I - lr A_s)^k)^T (A_q w_k - b_q).
  """
  grads = []
  for t in range(tasks.support[0].shape[0]):
    xs, ys = np.asarray(tasks.support[0][t]), np.asarray(tasks.support[1][t])
    xq, yq = np.asarray(tasks.query[0][t]), np.asarray(tasks.query[1][t])
    a_s, b_s = 2 * xs.T @ xs / len(ys), 2 * xs.T @ ys / len(ys)
    a_q, b_q = 2 * xq.T @ xq / len(yq), 2 * xq.T @ yq / len(yq)
    w_k = np.asarray(w, np.float64)
    for _ in range(steps):
      w_k = w_k - lr * (a_s @ w_k - b_s)
    query_grad = a_q @ w_k - b_q
    jac = np.linalg.matrix_power(np.eye(len(w_k)) - lr * a_s, steps)
    grads.append(query_grad if first_order else jac.T @ query_grad)
  return np.mean(grads, axis=0)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_maml_gradient_matches_closed_form_linear_regression(
    x64, first_order, steps):
  tasks = _linear_tasks()
  params = {"w": jnp.array([0.3, -0.2, 0.5])}
  lr = 0.1
  inner = mj.InnerLoop(loss_fn=_linear_loss, num_steps=steps, learning_rate=lr,
                       first_order=first_order)
  grads = jax.grad(lambda p: mj.meta_objective(p, tasks, inner)[0])(params)
  expected = _closed_form_maml_grad(params["w"], tasks, lr, steps, first_order)
  np.testing.assert_allclose(grads["w"], expected, rtol=1e-10, atol=1e-12)


def _tanh_problem():
  model = MLP(hidden_sizes=(5,), activation="tanh")
  params = model.init(jax.random.key(3), jnp.zeros((1, 1)))
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  keys = jax.random.split(jax.random.key(4), 4)
  tasks = mj.TaskBatch(
      (jax.random.normal(keys[0], (2, 6, 1)), jax.random.normal(keys[1], (2, 6, 1))),
      (jax.random.normal(keys[2], (2, 6, 1)), jax.random.normal(keys[3], (2, 6, 1))))
  return params, mj.mse_loss(model.apply), tasks


def test_second_order_gradient_matches_central_differences(x64):
  params, loss_fn, tasks = _tanh_problem()
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=3, learning_rate=0.2)
  objective = jax.jit(lambda p: mj.meta_objective(p, tasks, inner)[0])
  grads = jax.grad(objective)(params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  flat_grads, _ = jax.flatten_util.ravel_pytree(grads)
  eps = 1e-6
  numeric = np.array([
      (objective(unravel(flat.at[i].add(eps)))
       - objective(unravel(flat.at[i].add(-eps)))) / (2 * eps)
      for i in range(flat.size)])
  np.testing.assert_allclose(flat_grads, numeric, rtol=1e-6, atol=1e-9)


def test_first_order_equals_second_order_with_stop_gradient(x64):
  params, loss_fn, tasks = _tanh_problem()
  lr, steps = 0.2, 2

  def manual(p, task):  # unrolled, stop-gradient on every inner gradient
    for _ in range(steps):
      g = jax.lax.stop_gradient(jax.grad(loss_fn)(p, task.support))
      p = jax.tree.map(lambda w, gw: w - lr * gw, p, g)
    return loss_fn(p, task.query)

  expected = jax.grad(lambda p: jnp.mean(jax.vmap(lambda t: manual(p, t))(tasks)))(params)
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=steps, learning_rate=lr,
                       first_order=True)
  grads = jax.grad(lambda p: mj.meta_objective(p, tasks, inner)[0])(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
  second = jax.grad(lambda p: mj.meta_objective(
      p, tasks, mj.InnerLoop(loss_fn=loss_fn, num_steps=steps,
                             learning_rate=lr))[0])(params)
  difference = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), grads, second)
  assert max(jax.tree.leaves(difference)) > 1e-6  # the orders really differ


@pytest.mark.parametrize("steps,lr", [(0, 0.2), (3, 0.0)])
def test_zero_steps_or_zero_rate_gives_plain_query_gradient(x64, steps, lr):
  params, loss_fn, tasks = _tanh_problem()
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=steps, learning_rate=lr)
  grads = jax.grad(lambda p: mj.meta_objective(p, tasks, inner)[0])(params)
  plain = jax.grad(lambda p: jnp.mean(
      jax.vmap(lambda t: loss_fn(p, t.query))(tasks)))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
