"""metajax's per-compile XLA options: what they change and what they leave."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import backend
from metajax.models.kernels import conv_ops

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu",
                              reason="the options are for XLA:CPU")


def _optimized_hlo(fn, *args, options):
  return jax.jit(fn, compiler_options=options).lower(*args).compile().as_text()


@cpu_only
def test_convolutions_leave_ynnpack_and_dots_stay():
  options = backend.compiler_options()
  if not options:
    pytest.skip("this jaxlib does not take the option (or XLA_FLAGS sets it)")
  x, w = jnp.ones((2, 14, 14, 64)), jnp.ones((3, 3, 64, 64))  # Conv4's
  conv = lambda x, w: conv_ops.conv_reference(x, w)
  assert "__ynn_fusion" in _optimized_hlo(conv, x, w, options={})
  assert "__ynn_fusion" not in _optimized_hlo(conv, x, w, options=options)
  a, b = jnp.ones((64, 64)), jnp.ones((64, 64))
  assert "__ynn_fusion" in _optimized_hlo(jnp.matmul, a, b, options=options)


@cpu_only
def test_a_program_without_convolutions_compiles_the_same():
  options = backend.compiler_options()
  if not options:
    pytest.skip("this jaxlib does not take the option (or XLA_FLAGS sets it)")

  def mlp_grad(w, x):
    return jax.grad(lambda w: jnp.sum(jnp.tanh(x @ w) @ w.T))(w)

  w, x = jnp.ones((16, 16)), jnp.ones((8, 16))
  plain = _optimized_hlo(mlp_grad, w, x, options={})
  assert _optimized_hlo(mlp_grad, w, x, options=options) == plain


def test_results_are_unchanged():
  key = jax.random.split(jax.random.key(0), 2)
  x = jax.random.normal(key[0], (2, 8, 8, 4))
  w = jax.random.normal(key[1], (3, 3, 4, 4))
  got = jax.jit(conv_ops.conv_reference,
                compiler_options=backend.compiler_options())(x, w)
  np.testing.assert_allclose(got, conv_ops.conv_reference(x, w), rtol=1e-5,
                             atol=1e-5)


def test_the_users_xla_flags_win(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS",
                     f"--{backend.YNN_FUSION_FLAG}=individual_dot")
  assert backend.compiler_options() == {}
  assert backend.compiler_options("cpu") == {}


def test_the_options_are_for_the_cpu_backend_only():
  for name in ("gpu", "tpu", "rocm"):
    assert backend.compiler_options(name) == {}
  if jax.default_backend() == "cpu":
    assert backend.compiler_options("cpu") == backend.compiler_options()


@cpu_only
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_weight_gradient_is_one_convolution_outside_ynnpack(stride):
  # conv_ops writes it as the backprop-filter convolution (XLA's own
  # two-thread kernel under metajax's options), not as shifted products.
  options = backend.compiler_options()
  if not options:
    pytest.skip("this jaxlib does not take the option (or XLA_FLAGS sets it)")
  x = jnp.ones((2, 3, 6, 6, 8))
  dy = jnp.ones((2, 3, 6 // stride, 6 // stride, 8))
  wgrad = lambda x, dy: conv_ops.wgrad_p.bind(x, dy, stride=stride)
  hlo = _optimized_hlo(wgrad, x, dy, options=options)
  assert hlo.count(" convolution(") == 1, hlo
  assert " dot(" not in hlo and "__ynn_fusion" not in hlo
