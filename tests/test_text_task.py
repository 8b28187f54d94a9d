"""Text models and tasks: masking, the in-jit sampler, a few real meta-steps.

The meta-steps run on real CLINC150 episodes with the hashed n-gram model
(no GloVe needed); they skip when `<data_dir>/text/` is absent.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax import algorithms
from metajax.backend import PORTABLE
from metajax.models import text
from metajax.tasks.text import task as text_task
from metajax.tasks.text.sampling import TextTasks, sample_tasks

from tests.test_text_data import DATA_DIR, SHARED_CACHE, needs_data


@pytest.mark.parametrize("encoder", ["cnn", "mean"])
def test_padding_does_not_change_the_embedding(encoder):
  table = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
  table[0] = 5.0  # padding must be masked, whatever its row holds
  frozen = encoder == "cnn"
  embed = (text.Embed(frozen=text.FrozenTable(table)) if frozen
           else text.Embed(init_table=text.FrozenTable(table)))
  model = text.TextClassifier(num_classes=3, embed=embed, encoder=encoder,
                              filter_sizes=(3, 5), num_filters=4,
                              hidden_sizes=(8,))
  short_1x4 = jnp.array([[3, 7, 11, 2]], jnp.int32)
  padded_2x9 = jnp.array([[3, 7, 11, 2, 0, 0, 0, 0, 0],
                          [4, 0, 0, 0, 0, 0, 0, 0, 0]], jnp.int32)
  params = model.init(jax.random.key(0), short_1x4)
  assert ("embed" in params["params"]) != frozen
  np.testing.assert_allclose(model.apply(params, padded_2x9)[:1],
                             model.apply(params, short_1x4), rtol=1e-6,
                             atol=1e-6)
  # ...and the tokens do matter.
  assert not np.allclose(model.apply(params, padded_2x9)[1],
                         model.apply(params, short_1x4)[0])


def test_sampler_shapes_and_per_episode_label_permutation():
  classes, per_class, length = 7, 6, 3
  # ids encode (class, example): 100 * class + example + 1 in every position.
  ids_CxMxL = (100 * np.arange(classes)[:, None, None] +
               np.arange(per_class)[None, :, None] + 1) * np.ones(
                   (1, 1, length), np.int32)
  split = TextTasks(jnp.asarray(ids_CxMxL, jnp.int32),
                    jnp.arange(classes, dtype=jnp.int32))
  tasks = sample_tasks(split, jax.random.key(1), 16, 3, 2, 4)
  assert tasks.support[0].dtype == jnp.int32
  (xs, ys), (xq, yq) = jax.tree.map(np.asarray, (tasks.support, tasks.query))
  assert xs.shape == (16, 6, length) and xq.shape == (16, 12, length)
  assert ys.shape == (16, 6)
  np.testing.assert_array_equal(ys[0], [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(yq[0], np.repeat([0, 1, 2], 4))
  class_s, class_q = xs[..., 0] // 100, xq[..., 0] // 100
  orders = set()
  for t in range(16):
    # Each label is one class, the same in support and query...
    label_class = {int(y): int(c) for y, c in zip(ys[t], class_s[t])}
    assert len(set(label_class.values())) == 3
    assert all(label_class[int(y)] == c for y, c in zip(yq[t], class_q[t]))
    # ...and support and query examples are distinct.
    examples = np.concatenate([xs[t, :, 0], xq[t, :, 0]])
    assert len(np.unique(examples)) == len(examples)
    orders.add(tuple(label_class[i] for i in range(3)))
  assert len(orders) > 8  # labels are re-permuted every episode


@needs_data
@pytest.mark.parametrize("algorithm", ["protonet", "maml"])
def test_meta_steps_on_real_episodes_lower_the_loss(algorithm, monkeypatch):
  from experiments._text_base import text_config  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("METAJAX_CACHE_DIR", SHARED_CACHE)
  config = text_config("clinc150", shots=5, algorithm=algorithm, overrides={
      "task.data_dir": DATA_DIR, "task.queries": 5, "model": "text_ngram",
      "model.dim": 16, "model.hidden_sizes": (), "outer.meta_batch_size": 4,
      "inner.steps": 1, "inner.lr": 5.0})
  problem = text_task.build(config, PORTABLE)
  algo = algorithms.get(algorithm)
  meta_grad_fn = algo.make_meta_grad(config, problem)
  optimizer = optax.adam(1e-1)

  @jax.jit
  def step(params, opt_state, key):
    tasks = problem.train_sampler(key)
    grads, metrics = meta_grad_fn(params, tasks, key, 0)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  params = problem.init_params(jax.random.key(0))
  opt_state = optimizer.init(params)
  losses = []
  for i in range(30):
    params, opt_state, metrics = step(params, opt_state, jax.random.key(i))
    losses.append(float(metrics["meta_loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


@needs_data
def test_cnp_reads_a_text_encoder_whatever_its_last_layer(monkeypatch):
  # The residual encoder's last parameters are a learned scale, not a
  # Dense kernel: the neural process is sized from the traced embedding.
  from experiments._text_base import text_config  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("METAJAX_CACHE_DIR", SHARED_CACHE)
  config = text_config("clinc150", shots=5, algorithm="cnp", overrides={
      "task.data_dir": DATA_DIR, "task.queries": 5, "model": "text_ngram",
      "model.dim": 16, "model.hidden_sizes": (8,), "model.residual": True,
      "model.norm_scale": 3.0, "outer.meta_batch_size": 4,
      "inner.steps": 1, "inner.lr": 0.01, "algorithm.encoder_sizes": (16,),
      "algorithm.decoder_sizes": (16,)})
  problem = text_task.build(config, PORTABLE)
  algo = algorithms.get("cnp")
  algo.check(config, problem)
  meta_params = algo.init_meta_params(
      config, problem, problem.init_params(jax.random.key(0)))
  meta_grad_fn = algo.make_meta_grad(config, problem)
  optimizer = optax.adam(3e-2)

  @jax.jit
  def step(params, opt_state, key):
    grads, metrics = meta_grad_fn(params, problem.train_sampler(key), key, 0)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  opt_state = optimizer.init(meta_params)
  losses = []
  for i in range(30):
    meta_params, opt_state, metrics = step(meta_params, opt_state,
                                           jax.random.key(i))
    losses.append(float(metrics["meta_loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
