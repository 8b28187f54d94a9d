"""The fast Dense product: same values and reverse-mode derivatives as XLA's."""
import jax
import jax.extend
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from metajax import backend
from metajax.models import MLP
from metajax.models.kernels import dense_ops


def _tasks(num_tasks=3, n=6, seed=4):
  keys = jax.random.split(jax.random.key(seed), 4)
  return mj.TaskBatch(
      (jax.random.normal(keys[0], (num_tasks, n, 2)),
       jax.random.normal(keys[1], (num_tasks, n, 1))),
      (jax.random.normal(keys[2], (num_tasks, n, 2)),
       jax.random.normal(keys[3], (num_tasks, n, 1))))


def _meta_loss(dense, steps=2, dtype=jnp.float64):
  """MAML's meta-loss of a tanh MLP whose layers use product `dense`."""
  model = MLP(hidden_sizes=(7, 5), activation="tanh", dense=dense)
  inner = mj.InnerLoop(loss_fn=mj.mse_loss(model.apply), num_steps=steps,
                       learning_rate=0.3)
  tasks = _tasks()
  params = model.init(jax.random.key(3), jnp.zeros((1, 2)))
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  return (lambda p: mj.meta_objective(p, tasks, inner)[0]), params


def _derivative(fn, order):
  """`order`-th reverse-mode derivative: grad of the sum of the one before."""
  for _ in range(order - 1):
    fn = (lambda f: lambda p: jnp.sum(
        jax.flatten_util.ravel_pytree(jax.grad(f)(p))[0]))(fn)
  return jax.grad(fn)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_fast_meta_gradients_equal_plain_ones(x64, order):
  plain, params = _meta_loss("plain")
  fast, _ = _meta_loss("fast")
  np.testing.assert_allclose(fast(params), plain(params), rtol=1e-13)
  expected = _derivative(plain, order)(params)
  got = _derivative(fast, order)(params)
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert np.max(np.abs(e)) > 1e-3  # the comparison is not of zeros
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_fast_meta_gradient_matches_central_differences(x64):
  fast, params = _meta_loss("fast")
  grads, _ = jax.flatten_util.ravel_pytree(jax.grad(fast)(params))
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  eps = 1e-6
  for i in range(0, flat.size, 7):
    step = jnp.zeros_like(flat).at[i].set(eps)
    numeric = (fast(unravel(flat + step)) - fast(unravel(flat - step))) / (2 * eps)
    np.testing.assert_allclose(grads[i], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("w_batched", [False, True])
def test_matmul_under_vmap_second_order(x64, w_batched):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (4, 3, 5))
  w = jax.random.normal(keys[1], (4, 5, 6) if w_batched else (5, 6))
  in_axes = (0, 0 if w_batched else None)

  def loss(matmul):
    def per_task(x, w):
      grad_w = jax.grad(lambda w: jnp.sum(jnp.tanh(matmul(x, w)) ** 2))(w)
      return jnp.sum(jnp.sin(matmul(x, w - 0.1 * grad_w)))
    return lambda x, w: jnp.sum(jax.vmap(per_task, in_axes)(x, w))

  plain = loss(lambda x, w: x @ w)
  fast = loss(dense_ops.matmul)
  for argnum in (0, 1):
    np.testing.assert_allclose(jax.grad(fast, argnum)(x, w),
                               jax.grad(plain, argnum)(x, w), rtol=1e-12)


def _dot_contractions(jaxpr):
  """(lhs rank, lhs contracting axes) of every dot_general, sub-jaxprs too."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_axes, _), _ = eqn.params["dimension_numbers"]
      found.append((eqn.invars[0].aval.ndim, tuple(lhs_axes)))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _dot_contractions(sub)
  return found


@pytest.mark.parametrize("dense", ["plain", "fast"])
def test_fast_second_order_products_contract_the_lhs_last_axis(dense):
  """The point of 'fast': no product of the MAML meta-gradient contracts a
  non-minor axis of its left operand (the slow form on XLA:CPU); the plain
  product's weight gradients do, which this test also checks."""
  loss, params = _meta_loss(dense, dtype=jnp.float32)
  contractions = _dot_contractions(jax.make_jaxpr(jax.grad(loss))(params).jaxpr)
  assert contractions
  slow = [c for c in contractions if c[1] != (c[0] - 1,)]
  if dense == "fast":
    assert not slow
  else:
    assert slow


def _mlp_jvp(dense):
  """A forward-mode derivative of an MLP with product `dense` (as iMAML's
  Hessian-vector products take)."""
  model = MLP(hidden_sizes=(4,), activation="tanh", dense=dense)
  x = jnp.ones((3, 2))
  params = model.init(jax.random.key(0), x)
  return jax.jvp(lambda p: model.apply(p, x), (params,), (params,))[1]


def test_fast_has_no_forward_mode_and_forward_mode_avoids_it():
  x, w = jnp.ones((3, 2)), jnp.ones((2, 4))
  with pytest.raises(TypeError):
    jax.jvp(lambda w: dense_ops.matmul(x, w), (w,), (w,))
  with pytest.raises(TypeError):
    _mlp_jvp("fast")
  for name in ("cpu", "gpu", "tpu", None):
    dense = backend.for_backend(name, forward_mode=True).dense
    assert dense == "plain"
    assert _mlp_jvp(dense).shape == (3, 1)  # forward mode works
  assert backend.for_backend("cpu").dense == "fast"
  assert backend.for_backend("gpu").dense == "plain"
  cpu = jax.default_backend() == "cpu"
  assert backend.for_backend().dense == ("fast" if cpu else "plain")
  # An explicit product is the one used, whatever the backend; the
  # portable one is the default.
  assert dense_ops.get_dot_general("plain") is jax.lax.dot_general
  assert dense_ops.get_dot_general("fast") is dense_ops.fast_dot_general
  assert dense_ops.get_dot_general(dense_ops.matmul) is dense_ops.matmul
  assert MLP().dense == "plain" == backend.PORTABLE.dense


def test_bad_dense_names_and_products_are_errors():
  assert set(backend.DENSES) == set(dense_ops.NAMES)  # the choices offer all
  for bad in ("fastest", "auto"):
    with pytest.raises(ValueError, match=f"unknown dense product '{bad}'"):
      dense_ops.get_dot_general(bad)
  with pytest.raises(ValueError, match="MLP field 'dense'.*'fast', 'plain'"):
    MLP(dense="auto").init(jax.random.key(0), jnp.ones((1, 2)))
  with pytest.raises(ValueError, match="Dense's product"):
    dense_ops.fast_dot_general(jnp.ones((2, 3)), jnp.ones((2, 4)),
                               (((0,), (0,)), ((), ())))
  with pytest.raises(ValueError, match="'dense'.*'fast', 'plain'"):
    backend.Formulations(dense="fastest")
