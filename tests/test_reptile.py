"""Reptile against the closed form of gradient descent on quadratics."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from metajax.algorithms.reptile import reptile_meta_grad, step_batches

DIM, LR, STEPS = 3, 0.1, 4
STEP = jnp.zeros((), jnp.int32)  # every meta_grad_fn is given the step


def _quadratic_loss(params, batch):
  """Mean over examples of 0.5 (w - c)^T A (w - c)."""
  a_ExDxD, c_ExD = batch
  diff_ExD = params["w"][None, :] - c_ExD
  return 0.5 * jnp.mean(jnp.einsum("ed,edf,ef->e", diff_ExD, a_ExDxD, diff_ExD))


def _quadratic_tasks(num_tasks, seed=0):
  rng = np.random.default_rng(seed)
  m = rng.normal(size=(num_tasks, DIM, DIM))
  a_TxDxD = np.einsum("tij,tkj->tik", m, m) / DIM + 0.5 * np.eye(DIM)
  c_TxD = rng.normal(size=(num_tasks, DIM))
  # One example in support and one in query, the same quadratic: the loss on
  # their concatenation (Reptile's training data) is that quadratic.
  half = (jnp.asarray(a_TxDxD)[:, None], jnp.asarray(c_TxD)[:, None])
  return mj.TaskBatch(half, half), a_TxDxD, c_TxD


def _closed_form(w, a, c, lr=LR, steps=STEPS):
  """w_k = c + (I - lr A)^k (w - c)."""
  return c + np.linalg.matrix_power(np.eye(DIM) - lr * a, steps) @ (w - c)


def _inner():
  return mj.InnerLoop(loss_fn=_quadratic_loss, num_steps=STEPS, learning_rate=LR)


def test_batched_update_is_params_minus_mean_adapted(x64):
  tasks, a, c = _quadratic_tasks(5)
  w = np.array([0.3, -1.0, 2.0])
  grads, metrics = jax.jit(reptile_meta_grad(_inner()))(
      {"w": jnp.asarray(w)}, tasks, jax.random.key(0), STEP)
  adapted = [_closed_form(w, a[t], c[t]) for t in range(5)]
  np.testing.assert_allclose(grads["w"], w - np.mean(adapted, axis=0),
                             rtol=1e-12, atol=1e-14)
  assert np.isfinite(metrics["meta_loss"])


def test_outer_sgd_step_is_reptiles_interpolation(x64):
  tasks, a, c = _quadratic_tasks(4)
  w, epsilon = np.array([1.0, 0.0, -0.5]), 0.3
  optimizer = optax.sgd(epsilon)
  state = mj.init_meta_state({"w": jnp.asarray(w)}, optimizer,
                             jax.random.key(0))
  step = mj.make_meta_step(reptile_meta_grad(_inner()), optimizer)
  state, _ = step(state, tasks)
  mean_adapted = np.mean([_closed_form(w, a[t], c[t]) for t in range(4)], 0)
  np.testing.assert_allclose(state.params["w"], w + epsilon * (mean_adapted - w),
                             rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("num_tasks", [1, 3])
def test_serial_update_interpolates_task_after_task(x64, num_tasks):
  tasks, a, c = _quadratic_tasks(num_tasks, seed=1)
  w, epsilon = np.array([0.5, 0.5, -2.0]), 0.4
  grads, _ = jax.jit(reptile_meta_grad(_inner(), serial=True,
                                       epsilon=epsilon))(
      {"w": jnp.asarray(w)}, tasks, jax.random.key(0), STEP)
  current = w
  for t in range(num_tasks):
    current = current + epsilon * (_closed_form(current, a[t], c[t]) - current)
  # The outer SGD step at epsilon lands on the serially interpolated weights.
  np.testing.assert_allclose(w - epsilon * grads["w"], current, rtol=1e-12,
                             atol=1e-14)
  if num_tasks == 1:  # meta-batch 1: serial and batched coincide
    batched, _ = jax.jit(reptile_meta_grad(_inner()))(
        {"w": jnp.asarray(w)}, tasks, jax.random.key(0), STEP)
    np.testing.assert_allclose(grads["w"], batched["w"], rtol=1e-12)


def test_inner_batches_are_passes_over_reshuffled_data():
  data = (jnp.arange(6.0)[:, None], jnp.arange(6))
  batches = step_batches(data, jax.random.key(3), num_steps=5, batch_size=4)
  assert batches[0].shape == (5, 4, 1) and batches[1].shape == (5, 4)
  order = np.asarray(batches[1]).reshape(-1)
  # 20 draws: three whole passes (permutations of the 6 examples), then 2.
  for start in (0, 6, 12):
    assert sorted(order[start:start + 6]) == list(range(6))
  np.testing.assert_array_equal(np.asarray(batches[0])[..., 0], batches[1])
  assert not np.array_equal(order[:6], order[6:12])  # reshuffled


def test_mini_batch_steps_follow_their_batches(x64):
  # Two examples per task (support and query, two different quadratics):
  # with batches of one, each inner step is a step on one quadratic alone,
  # in the order `step_batches` draws; a whole-data batch gives the mean.
  tasks, _, _ = _quadratic_tasks(2)
  other, a2, c2 = _quadratic_tasks(2, seed=1)
  tasks = mj.TaskBatch(tasks.support, other.query)
  _, a1, c1 = _quadratic_tasks(2)
  w = np.array([0.3, -1.0, 2.0])
  key = jax.random.key(5)
  grads, _ = jax.jit(reptile_meta_grad(_inner(), inner_batch_size=1))(
      {"w": jnp.asarray(w)}, tasks, key, STEP)
  adapted = []
  for t, task_key in enumerate(jax.random.split(key, 2)):
    data = (jnp.stack([jnp.asarray(a1[t]), jnp.asarray(a2[t])]),
            jnp.stack([jnp.asarray(c1[t]), jnp.asarray(c2[t])]))
    index = np.asarray(step_batches((data[1][:, 0], jnp.arange(2)), task_key,
                                    STEPS, 1)[1])[:, 0]
    current = w
    for i in index:
      current = _closed_form(current, np.asarray(data[0][i]),
                             np.asarray(data[1][i]), steps=1)
    adapted.append(current)
  np.testing.assert_allclose(grads["w"], w - np.mean(adapted, axis=0),
                             rtol=1e-12, atol=1e-14)
  whole, _ = jax.jit(reptile_meta_grad(_inner()))(
      {"w": jnp.asarray(w)}, tasks, key, STEP)
  assert not np.allclose(grads["w"], whole["w"], rtol=1e-3)
