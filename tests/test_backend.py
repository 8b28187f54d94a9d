"""metajax.backend: which formulations a backend gets, and that they agree."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import backend
from metajax.models import MLP
from metajax.models.conv4 import Conv4


def test_for_backend_picks_cpu_on_cpu_and_portable_elsewhere():
  assert backend.for_backend("cpu") == backend.CPU
  assert backend.for_backend("gpu") == backend.PORTABLE
  assert backend.for_backend("tpu") == backend.PORTABLE
  assert backend.for_backend() == backend.for_backend(jax.default_backend())
  assert backend.PORTABLE == backend.Formulations()  # the library's defaults
  assert backend.CPU != backend.PORTABLE


def test_forward_mode_forces_the_plain_dense_product():
  cpu = backend.for_backend("cpu", forward_mode=True)
  assert cpu.dense == "plain"
  assert cpu == dataclasses.replace(backend.CPU, dense="plain")
  for name in ("gpu", "tpu"):
    assert backend.for_backend(name, forward_mode=True) == backend.PORTABLE


def test_the_formulations_take_the_allowed_values():
  assert backend.CONVS == ("fast", "im2col", "reference")
  assert backend.DENSES == ("fast", "plain")
  assert backend.MAX_POOLS == ("argmax", "pairwise")
  for formulations in (backend.CPU, backend.PORTABLE):
    assert formulations.validate() is formulations
    assert formulations.conv in backend.CONVS
    assert formulations.dense in backend.DENSES
    assert formulations.max_pool in backend.MAX_POOLS


@pytest.mark.parametrize("field,value,allowed", [
    ("conv", "auto", "['fast', 'im2col', 'reference']"),
    ("conv", None, "['fast', 'im2col', 'reference']"),
    ("dense", "fastest", "['fast', 'plain']"),
    ("max_pool", "auto", "['argmax', 'pairwise']"),
    ("fold_norm", "auto", "True or False"),
    ("first_step_outside_scan", 1, "True or False"),
    ("prefetch_tasks", None, "True or False")])
def test_bad_formulations_are_errors_that_name_the_field(field, value, allowed):
  with pytest.raises(ValueError, match=f"field '{field}'") as error:
    backend.Formulations(**{field: value})
  assert allowed in str(error.value) and repr(value) in str(error.value)
  with pytest.raises(ValueError, match=f"field '{field}'"):
    dataclasses.replace(backend.CPU, **{field: value})


def test_formulations_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    backend.PORTABLE.conv = "fast"  # pytype: disable=attribute-error


def _conv4(formulations, width):
  return Conv4(num_classes=3, width=width, num_blocks=2,
               conv=formulations.conv, fold_norm=formulations.fold_norm,
               max_pool=formulations.max_pool)


def _mlp(formulations):
  return MLP(hidden_sizes=(7, 5), activation="tanh", dense=formulations.dense)


def test_the_models_never_ask_for_the_backend(monkeypatch):
  def no_backend():
    raise AssertionError("a model called jax.default_backend()")
  monkeypatch.setattr(jax, "default_backend", no_backend)
  x_img, x_vec = jnp.ones((2, 8, 8, 1)), jnp.ones((3, 2))
  for formulations in (backend.CPU, backend.PORTABLE):
    for model, x in ((_conv4(formulations, 16), x_img),
                     (_mlp(formulations), x_vec)):
      params = jax.eval_shape(model.init, jax.random.key(0), x)
      loss = lambda p, m=model, x=x: jnp.sum(m.apply(p, x))
      jax.make_jaxpr(jax.grad(loss))(params)


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _values_and_derivatives(model, params, x):
  """Outputs, gradients w.r.t. params, and the gradient of a gradient norm."""
  loss = lambda p: jnp.sum(jnp.sin(model.apply(p, x)))
  grad = jax.grad(loss)
  grad_norm = lambda p: sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grad(p)))
  return jax.jit(lambda p: (model.apply(p, x), grad(p),
                            jax.grad(grad_norm)(p)))(params)


def _close(a, b, rtol=1e-10):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    assert x.dtype == jnp.float64
    assert np.max(np.abs(y)) > 0  # the comparison is not of zeros
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())


# Width 8 (9C > width) leaves the first block unfolded; 16 folds it under CPU.
@pytest.mark.parametrize("width", [8, 16])
def test_cpu_and_portable_conv4_agree_in_float64(x64, width):
  key_x, key_p = jax.random.split(jax.random.key(5))
  x = jax.random.normal(key_x, (6, 8, 8, 1), jnp.float64)  # one task's batch
  params = _f64(_conv4(backend.PORTABLE, width).init(key_p, x))
  params = jax.tree.map(  # a non-trivial bias and negative scales
      lambda a: a + 0.5 * jnp.sin(jnp.arange(a.size)).reshape(a.shape), params)
  cpu, portable = [_values_and_derivatives(_conv4(f, width), params, x)
                   for f in (backend.CPU, backend.PORTABLE)]
  assert cpu[0].shape == (6, 3)
  _close(cpu, portable)


def test_cpu_and_portable_mlp_agree_in_float64(x64):
  key_x, key_p = jax.random.split(jax.random.key(6))
  x = jax.random.normal(key_x, (6, 2), jnp.float64)
  params = _f64(_mlp(backend.PORTABLE).init(key_p, x))
  cpu, portable = [_values_and_derivatives(_mlp(f), params, x)
                   for f in (backend.CPU, backend.PORTABLE)]
  assert backend.CPU.dense == "fast" and backend.PORTABLE.dense == "plain"
  _close(cpu, portable)
