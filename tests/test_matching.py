"""Matching Networks: the one-sided cosine attention, its invariances, the
full-context embeddings, the meta-gradient, and training on real Omniglot."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithm_problems import build_problem_with, tiny_sine_config
from conftest import data_dir_or_none
from metajax.algorithms import matching
from metajax.algorithms.protonet import embedding_fn
from metajax.core.losses import tree_is_finite
from metajax.core.types import TaskBatch
from metajax.tasks.base import Problem
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override

DATA_DIR = data_dir_or_none()
WAYS, SHOTS, QUERIES, INPUTS, WIDTH, TASKS = 3, 2, 3, 6, 5, 3


def tiny_problem(config=None, dtype=np.float32):
  """3-way Gaussian-cluster tasks and a linear layer as the body, all from
  numpy (no random-number programs to compile): a `Problem` whose
  `embed_fn` is the body and whose head's input width is the embedding's."""
  del config
  rng = np.random.default_rng(0)
  means = rng.normal(size=(TASKS, WAYS, 1, INPUTS))
  x = means + 0.8 * rng.normal(size=(TASKS, WAYS, SHOTS + QUERIES, INPUTS))
  labels = np.broadcast_to(np.arange(WAYS)[None, :, None], x.shape[:3])
  split = lambda a, lo, hi: jnp.asarray(a[:, :, lo:hi].reshape(
      (TASKS, WAYS * (hi - lo)) + a.shape[3:]))
  tasks = TaskBatch((split(x.astype(dtype), 0, SHOTS), split(labels, 0, SHOTS)),
                    (split(x.astype(dtype), SHOTS, SHOTS + QUERIES),
                     split(labels, SHOTS, SHOTS + QUERIES)))
  dense = lambda fan_in, fan_out: {
      "kernel": jnp.asarray((rng.normal(size=(fan_in, fan_out))
                             / math.sqrt(fan_in)).astype(dtype)),
      "bias": jnp.zeros((fan_out,), dtype)}
  params = {"params": {"body": dense(INPUTS, WIDTH),
                       "head": dense(WIDTH, WAYS)}}
  body = lambda p, x: (x @ p["params"]["body"]["kernel"]
                       + p["params"]["body"]["bias"][None, :])
  return Problem(
      kind="classification", model=None, init_params=lambda key: params,
      loss_fn=None, metric_fn=None, train_sampler=lambda key: tasks,
      evaluate=None, eval_tasks=lambda split="test", num_tasks=None: {
          "fixed": tasks}, embed_fn=body, num_classes=WAYS)


def tiny_setup(monkeypatch, dtype=np.float32, **changes):
  """`(config, problem, meta_params, tasks)` of matching on `tiny_problem`,
  built as the trainer builds it (config validated, the algorithm's check
  run, its meta-parameters initialised)."""
  monkeypatch.setattr(train, "build_problem", build_problem_with(
      lambda config: tiny_problem(config, dtype)))
  config = tiny_sine_config(algorithm="matching", **changes)
  _, _, problem = train.build_problem(config)
  meta_params = matching.init_meta_params(
      config, problem, problem.init_params(jax.random.key(0)))
  return config, problem, meta_params, problem.train_sampler(None)


def numpy_class_probs(query, support, labels, num_ways):
  """Vinyals et al.: sum over each class of softmax_i(f . g_i / |g_i|)."""
  logits = query @ support.T / np.linalg.norm(support, axis=1)[None, :]
  weights = np.exp(logits - logits.max(1, keepdims=True))
  weights /= weights.sum(1, keepdims=True)
  return weights, weights @ np.eye(num_ways)[labels]


def test_probabilities_are_class_sums_of_one_sided_cosine_attention():
  rng = np.random.default_rng(0)
  support, query = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
  labels = rng.permutation(6) % 3
  weights, probs = numpy_class_probs(query, support, labels, 3)
  np.testing.assert_allclose(
      matching.attention_weights(jnp.asarray(query), jnp.asarray(support)),
      weights, rtol=1e-5, atol=1e-7)
  log_p = matching.class_log_probs(jnp.asarray(query), jnp.asarray(support),
                                   jnp.asarray(labels), 3)
  np.testing.assert_allclose(np.exp(log_p), probs, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.exp(log_p).sum(1), 1.0, rtol=1e-6)


def test_support_scale_changes_nothing_and_query_scale_sharpens():
  rng = np.random.default_rng(1)
  support, query = rng.normal(size=(4, 5)), rng.normal(size=(6, 5))
  labels = jnp.arange(4)  # one shot: the probabilities are the attention
  probs = lambda q, s: np.exp(matching.class_log_probs(
      jnp.asarray(q), jnp.asarray(s), labels, 4))
  base = probs(query, support)
  scales = rng.uniform(0.1, 10.0, size=(4, 1))  # each support row its own
  np.testing.assert_allclose(probs(query, support * scales), base,
                             rtol=1e-5, atol=1e-7)
  sharp = probs(3.0 * query, support)
  _, expected = numpy_class_probs(3.0 * query, support, np.arange(4), 4)
  np.testing.assert_allclose(sharp, expected, rtol=1e-5, atol=1e-7)
  entropy = lambda p: -np.sum(p * np.log(p), axis=1)
  assert np.all(entropy(sharp) < entropy(base) - 1e-3)
  assert np.all(sharp.max(1) > base.max(1))
  assert np.array_equal(sharp.argmax(1), base.argmax(1))


def test_support_order_and_class_names_do_not_matter(monkeypatch):
  config, problem, meta_params, tasks = tiny_setup(monkeypatch)
  task = jax.tree.map(lambda leaf: leaf[0], tasks)
  (x_s, labels_S), (x_q, _) = task.support, task.query
  embed = embedding_fn(config, problem)
  log_probs = jax.jit(lambda xs, ls: matching.class_log_probs(
      embed(meta_params["params"], x_q), embed(meta_params["params"], xs),
      ls, 3))
  base = np.asarray(log_probs(x_s, labels_S))
  order = np.array([4, 1, 5, 0, 3, 2])
  np.testing.assert_allclose(log_probs(x_s[order], labels_S[order]), base,
                             rtol=1e-5, atol=1e-6)
  relabel = np.array([2, 0, 1])  # class c is called relabel[c]
  renamed = np.asarray(log_probs(x_s, jnp.asarray(relabel)[labels_S]))
  np.testing.assert_allclose(renamed[:, relabel], base, rtol=1e-6)
  assert not np.allclose(renamed, base)


def test_full_context_embeddings(monkeypatch):
  config, problem, meta_params, tasks = tiny_setup(
      monkeypatch, algorithm__fce=True, algorithm__read_steps=2)
  assert set(meta_params) == {"params", "fce"}
  task = jax.tree.map(lambda leaf: leaf[0], tasks)
  embed = embedding_fn(config, problem)
  g_SxD = embed(meta_params["params"], task.support[0])
  f_QxD = embed(meta_params["params"], task.query[0])
  fce = meta_params["fce"]

  @jax.jit
  def outputs(fce, g_SxD):
    context_SxD = matching.support_in_context(fce, g_SxD)
    return (context_SxD,
            matching.query_in_context(fce, f_QxD, context_SxD, 0),
            matching.query_in_context(fce, f_QxD, context_SxD, 2))

  context, read_0, read_2 = outputs(fce, g_SxD)
  # Zero read steps: the query keeps the body's embedding, exactly.
  np.testing.assert_array_equal(read_0, f_QxD)
  assert not np.allclose(read_2, f_QxD) and not np.allclose(context, g_SxD)
  # An LSTM with all-zero weights outputs 0 (o = 1/2, c = 0), so zeroed FCE
  # params give the plain model for any number of read steps.
  zeroed = jax.tree.map(jnp.zeros_like, fce)
  z_context, z_read_0, z_read_2 = outputs(zeroed, g_SxD)
  np.testing.assert_array_equal(z_context, g_SxD)
  np.testing.assert_array_equal(z_read_0, f_QxD)
  np.testing.assert_array_equal(z_read_2, f_QxD)
  # The bidirectional LSTM reads the support as a sequence: order matters.
  reordered, _, _ = outputs(fce, g_SxD[::-1])
  assert not np.allclose(reordered[::-1], context, atol=1e-4)


def test_vmapped_meta_gradient_equals_a_loop_over_tasks(monkeypatch, x64):
  del x64
  config, problem, meta_params, tasks = tiny_setup(monkeypatch, np.float64)
  assert {leaf.dtype for leaf in jax.tree.leaves(meta_params)} == {
      jnp.dtype(jnp.float64)}
  assert tasks.support[0].dtype == jnp.float64
  grads, metrics = jax.jit(matching.make_meta_grad(config, problem))(
      meta_params, tasks, jax.random.key(0), 0)
  embed = embedding_fn(config, problem)
  one_task = jax.jit(jax.value_and_grad(
      lambda p, t: matching.task_loss_and_metrics(p, t, embed, 3, False,
                                                  1)[0]))
  per_task = [one_task(meta_params, jax.tree.map(lambda l: l[i], tasks))
              for i in range(tasks.support[0].shape[0])]
  np.testing.assert_allclose(metrics["meta_loss"],
                             np.mean([loss for loss, _ in per_task]),
                             rtol=1e-12)
  expected = jax.tree.map(lambda *g: np.mean(g, axis=0),
                          *[g for _, g in per_task])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10,
                                                       atol=1e-14),
               grads, expected)
  assert bool(tree_is_finite(grads)) and float(optax.tree.norm(grads)) > 0


def test_a_few_fixed_tasks_are_overfit(monkeypatch):
  # With full-context embeddings: the LSTMs' meta-gradients train them too.
  config, problem, meta_params, tasks = tiny_setup(monkeypatch,
                                                   algorithm__fce=True)
  meta_grad_fn = matching.make_meta_grad(config, problem)
  optimizer = optax.adam(3e-2)

  @jax.jit
  def train_on(meta_params):
    def step(carry, _):
      params, opt_state = carry
      grads, metrics = meta_grad_fn(params, tasks, jax.random.key(0), 0)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), metrics
    (trained, _), metrics = jax.lax.scan(step, (meta_params, optimizer.init(
        meta_params)), None, length=150)
    return trained, metrics

  trained, metrics = train_on(meta_params)
  first, last = metrics["meta_loss"][0], metrics["meta_loss"][-1]
  assert last < 0.05 * first, (first, last)
  assert metrics["post_accuracy"][0] < 0.9  # not fit before training
  assert metrics["post_accuracy"][-1] == 1.0
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                       trained["fce"], meta_params["fce"])
  assert min(jax.tree.leaves(moved)) > 1e-3, moved
  # The evaluation hook scores the same tasks with the trained parameters.
  results = matching.evaluate(config, problem, trained)
  assert list(results) == ["fixed"]
  assert results["fixed"]["accuracy"]["step_0"]["mean"] == 1.0
  assert results["fixed"]["loss"]["step_0"]["mean"] < 0.05 * first


def test_settings_it_cannot_take_are_config_errors(monkeypatch):
  with pytest.raises(ConfigError, match="'inner.steps'.*no inner loop"):
    train.build_problem(tiny_sine_config(algorithm="matching",
                                         inner__steps=5))
  with pytest.raises(ConfigError, match="'inner.lr'"):
    train.build_problem(tiny_sine_config(algorithm="matching",
                                         inner__lr=0.4))
  with pytest.raises(ConfigError, match="'algorithm'.*classification"):
    train.build_problem(tiny_sine_config(algorithm="matching"))
  with pytest.raises(ConfigError, match="'algorithm.read_steps'.*fce"):
    tiny_sine_config(algorithm="matching", algorithm__read_steps=3)
  with pytest.raises(ConfigError, match="'algorithm.read_steps'"):
    tiny_sine_config(algorithm="matching", algorithm__fce=True,
                     algorithm__read_steps=-1)
  monkeypatch.setattr(train, "build_problem",
                      build_problem_with(tiny_problem))
  config = tiny_sine_config(algorithm="matching", algorithm__fce=True)
  train.build_problem(config)  # accepted
  # The FCE LSTMs are sized from the head's input; an embedding of another
  # width is refused, naming the field.
  wider_head = lambda config: dataclasses.replace(
      tiny_problem(), init_params=lambda key: {"params": {
          **tiny_problem().init_params(key)["params"],
          "head": {"kernel": jnp.zeros((WIDTH + 1, WAYS))}}})
  monkeypatch.setattr(train, "build_problem", build_problem_with(wider_head))
  with pytest.raises(ConfigError, match="'algorithm.fce'.*width 5.*6"):
    train.build_problem(config)


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
def test_one_meta_step_on_real_omniglot_lowers_the_loss():
  # Width 16 and these evaluation tasks, as tests/test_omniglot_algorithms.py
  # uses: in one session the two share their compiled initialisation.
  config = override(main.load_experiment(
      "omniglot_5way1shot_budget_matching"), {
          "task.data_dir": DATA_DIR, "model.width": 16,
          "task.eval_queries": 3})
  _, _, problem = train.build_problem(config)
  meta_params = matching.init_meta_params(
      config, problem, problem.init_params(jax.random.key(0)))
  # The tasks tests/test_omniglot_algorithms.py evaluates on: in one session
  # the compiled sampler is shared too.
  (tasks,) = problem.eval_tasks("test", 2).values()
  meta_grad_fn = matching.make_meta_grad(config, problem)
  outer = train.make_outer_optimizer(config)

  @jax.jit
  def one_meta_step(meta_params):
    grads, metrics = meta_grad_fn(meta_params, tasks, jax.random.key(0), 0)
    updates, _ = outer.update(grads, outer.init(meta_params), meta_params)
    stepped = optax.apply_updates(meta_params, updates)
    return metrics, meta_grad_fn(stepped, tasks, jax.random.key(0), 1)[1]

  before, after = one_meta_step(meta_params)
  assert 0.0 < float(before["post_accuracy"]) < 1.0
  assert float(after["meta_loss"]) < float(before["meta_loss"]), (before,
                                                                   after)
