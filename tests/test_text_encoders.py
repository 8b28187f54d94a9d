"""The idf-weighted residual encoder: untrained it is the nearest-mean
baseline's feature, it ignores padding, and its meta-gradient is exact."""
import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from metajax.core.objective import InnerLoop, maml_task_loss
from metajax.core.losses import classification_fns
from metajax.core.types import TaskBatch
from metajax.models import configs as model_configs
from metajax.models import text
from metajax.settings import ConfigError
from metajax.tasks.text import vocab
from metajax.training.config import override


def _model(table, weights, learned=False, residual=True, norm_scale=3.0,
           num_classes=3):
  return text.TextClassifier(
      num_classes=num_classes, encoder="mean", hidden_sizes=(8,),
      activation="tanh",
      embed=text.Embed(init_table=text.FrozenTable(table)),
      word_weights=text.FrozenTable(weights), learn_weights=learned,
      residual=residual, norm_scale=norm_scale)


def _embedding(model, params, ids):
  """The head's input (what ProtoNets and ANIL see)."""
  captured = {}

  def record(next_fun, args, kwargs, context):
    if context.module.name == "head":
      captured["x"] = args[0]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    model.apply(params, ids)
  return captured["x"]


def test_idf_matches_a_direct_count():
  ids = np.array([[2, 3, 3, 0], [3, 4, 0, 0], [5, 0, 0, 0]])
  got = vocab.idf(ids, 7)
  df = np.array([0, 0, 1, 2, 1, 1, 0])
  np.testing.assert_allclose(got, np.log(4 / (1 + df)) + 1)


@pytest.mark.parametrize("learned", [False, True])
def test_untrained_encoder_is_the_scaled_weighted_mean(learned):
  rng = np.random.default_rng(0)
  table = rng.normal(size=(10, 5)).astype(np.float32)
  weights = np.abs(rng.normal(size=10)).astype(np.float32)
  weights[[0, 4]] = 0.0  # padding and a word without a vector
  model = _model(table, weights, learned)
  ids = jnp.array([[2, 4, 7, 7, 0, 0], [3, 0, 0, 0, 0, 0]], jnp.int32)
  params = model.init(jax.random.key(0), ids)
  assert jnp.all(params["params"]["residual_out"]["kernel"] == 0)
  w = weights[np.asarray(ids)]
  mean = (w[..., None] * table[np.asarray(ids)]).sum(1) / w.sum(1)[:, None]
  expected = 3.0 * mean / np.linalg.norm(mean, axis=1, keepdims=True)
  np.testing.assert_allclose(_embedding(model, params, ids), expected,
                             rtol=1e-5, atol=1e-6)
  # Padding to a longer length changes nothing.
  longer = jnp.pad(ids, ((0, 0), (0, 5)))
  np.testing.assert_allclose(model.apply(params, longer),
                             model.apply(params, ids), rtol=1e-5, atol=1e-6)


def test_maml_meta_gradient_of_the_encoder_in_float64(x64):
  del x64
  rng = np.random.default_rng(1)
  table = rng.normal(size=(12, 4))
  weights = np.abs(rng.normal(size=12)) + 0.5
  weights[0] = 0.0
  model = _model(table, weights, learned=True, norm_scale=2.0, num_classes=2)
  ids = jnp.asarray(rng.integers(1, 12, size=(4, 5)), jnp.int32)
  labels = jnp.array([0, 1, 0, 1], jnp.int32)
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        model.init(jax.random.key(2), ids))
  # Move off the zero-initialised residual so its gradient is exercised.
  params = jax.tree.map(lambda a: a + 0.1 * jnp.ones_like(a), params)
  loss_fn = classification_fns(model.apply)["loss_fn"]
  inner = InnerLoop(loss_fn=loss_fn, num_steps=1, learning_rate=0.3)
  task = TaskBatch(support=(ids[:2], labels[:2]), query=(ids[2:], labels[2:]))
  objective = jax.jit(lambda p: maml_task_loss(p, task, inner)[0])
  grads = jax.jit(jax.grad(objective))(params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  grad_flat = jax.flatten_util.ravel_pytree(grads)[0]
  direction = jnp.asarray(rng.normal(size=flat.shape))
  eps = 1e-5
  numeric = (objective(unravel(flat + eps * direction)) -
             objective(unravel(flat - eps * direction))) / (2 * eps)
  np.testing.assert_allclose(grad_flat @ direction, numeric, rtol=1e-6)


def test_weighting_without_weights_or_negative_scale_is_refused():
  config = model_configs.TextMeanConfig(weighting="idf")
  with pytest.raises(ConfigError, match="model.weighting"):
    model_configs.build_text(config, 5, 10, np.zeros((10, 4), np.float32))
  from experiments._text_base import row_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="norm_scale"):
    override(row_config("huffpost", 5, 1, "protonet", "idf", 10),
             {"model.norm_scale": -1.0})
