"""SNAIL and the LSTM sequence learner as meta-learners (`algorithms.snail`).

Tiny learners on synthetic Gaussian-cluster tasks (3 ways, 1 shot, 2 queries
per class: sequences of 3 support pairs and the query); one meta-step on
real Omniglot tasks. Each backbone's setup and meta-gradient are built and
compiled once (`setup`): compiling, not computing, is what these cost.
"""
import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algorithm_problems import (
    build_problem_with, cluster_problem, tiny_sine_config)
from conftest import data_dir_or_none
from metajax.algorithms import snail
from metajax.algorithms.protonet import features_before_head
from metajax.core.types import TaskBatch
from metajax.training import cli
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override

DATA_DIR = data_dir_or_none()
WAYS, SUPPORT, QUERIES, TASKS, EMBEDDING = 3, 3, 6, 3, 16


def cluster_config(backbone="snail", **changes):
  return tiny_sine_config({
      "algorithm": "snail", "algorithm.backbone": backbone,
      "algorithm.max_length": SUPPORT + 1, "algorithm.tc_filters": 4,
      "algorithm.attention_sizes": (4, 6), "algorithm.lstm_size": 6,
      "task.support_points": 1, "task.query_points": 2,
      "outer.meta_batch_size": TASKS, "eval.num_tasks": TASKS}, **changes)


def random_like(shapes, seed=0):
  """Normal weights of these shapes scaled by 1/sqrt(fan-in), zero biases,
  unit batch-norm scales: `init_meta_params` itself compiles a threefry per
  parameter (seconds of CPU), so it runs once, in its own test."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    if getattr(path[-1], "key", None) == "scale":
      return jnp.ones(s.shape, s.dtype)
    scale = 1 / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.0
    return jnp.asarray(scale * rng.normal(size=s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def abstract_meta_params(config, problem):
  return jax.eval_shape(
      lambda key: snail.init_meta_params(config, problem,
                                         problem.init_params(key)),
      jax.random.key(0))


def cluster_tasks(num_tasks, seed):
  """`cluster_problem`'s tasks, drawn with NumPy (its sampler's threefry
  would compile for seconds): class means in 2 dimensions, 6 dimensions of
  large noise, support then queries, class-major."""
  rng = np.random.default_rng(seed)
  points = 1 + QUERIES // WAYS
  means = 2.0 * rng.normal(size=(num_tasks, WAYS, 1, 2))
  shape = (num_tasks, WAYS, points)
  x = np.concatenate([means + 0.3 * rng.normal(size=shape + (2,)),
                      3.0 * rng.normal(size=shape + (6,))], -1)
  labels = np.broadcast_to(np.arange(WAYS)[None, :, None], shape)
  split = lambda a, lo, hi: jnp.asarray(a[:, :, lo:hi].reshape(
      (num_tasks, -1) + a.shape[3:]))
  return TaskBatch((split(x, 0, 1).astype(jnp.float32), split(labels, 0, 1)),
                   (split(x, 1, points).astype(jnp.float32),
                    split(labels, 1, points)))


@functools.lru_cache(maxsize=None)
def setup(backbone="snail"):
  """`(config, problem, meta_params, tasks, jitted meta_grad_fn)` on the
  cluster problem, once per backbone."""
  config = cluster_config(backbone)
  _, _, problem = build_problem_with(cluster_problem)(config)
  shapes = abstract_meta_params(config, problem)
  fixed = {"3-way 1-shot fresh": cluster_tasks(TASKS, seed=2)}

  def eval_tasks(split="test", num_tasks=None):
    del split, num_tasks
    return fixed

  problem = dataclasses.replace(problem, eval_tasks=eval_tasks)
  return (config, problem, random_like(shapes), cluster_tasks(TASKS, seed=1),
          jax.jit(snail.make_meta_grad(config, problem)))


def task_at(tasks, i):
  """Task `i` of a meta-batch (NumPy indexing: no eager XLA op to compile)."""
  return jax.tree.map(lambda leaf: np.asarray(leaf)[i], tasks)


def test_meta_params_are_the_body_without_its_head_and_the_learner():
  # The LSTM: its initialisation compiles fastest.
  config = cluster_config("lstm")
  _, _, problem = build_problem_with(cluster_problem)(config)
  model_params = problem.init_params(jax.random.key(0))
  meta_params = snail.init_meta_params(config, problem, model_params)
  assert list(meta_params) == ["body", "sequence"]
  assert list(meta_params["body"]["params"]) == ["Dense_0"]  # no head
  jax.tree.map(np.testing.assert_array_equal, meta_params["body"]["params"],
               {"Dense_0": model_params["params"]["Dense_0"]})
  # The learner reads [embedding, one-hot label] at each step, and was
  # initialised by its own initialisers.
  learner = meta_params["sequence"]["params"]
  assert learner["input_kernel"].shape == (EMBEDDING + WAYS, 4 * 6)
  np.testing.assert_array_equal(learner["bias"][6:12], 1.0)  # forget gate
  # SNAIL's: the same structure as `setup` draws.
  snail_config, snail_problem, snail_params, _, _ = setup("snail")
  qkv = snail_params["sequence"]["params"]["attention0"]["qkv"]["kernel"]
  assert qkv.shape == (EMBEDDING + WAYS, 4 + 4 + 2)
  assert jax.tree.structure(snail_params) == jax.tree.structure(
      abstract_meta_params(snail_config, snail_problem))


def test_prediction_reads_the_permuted_support_but_not_the_query_label():
  config, problem, meta_params, tasks, _ = setup()
  task_logits = jax.jit(snail.make_task_fns(config, problem)[0])
  task, key = task_at(tasks, 0), jax.random.key(2)
  (x_s, y_s), (x_q, y_q) = task.support, task.query
  logits = task_logits(meta_params, task, key)
  # The query's true label is not an input...
  relabelled = task._replace(query=(x_q, (y_q + 1) % WAYS))
  np.testing.assert_array_equal(task_logits(meta_params, relabelled, key),
                                logits)
  # ... the support's labels are.
  swapped = task._replace(support=(x_s, (y_s + 1) % WAYS))
  assert np.abs(task_logits(meta_params, swapped, key) - logits).max() > 1e-4
  # Each query's sequence is the support pairs in the key's order (the
  # sampler's class-major order would give the labels away by position),
  # then the query with no label; its prediction is the last step's.
  order = jax.random.permutation(key, SUPPORT)
  assert not np.array_equal(order, np.arange(SUPPORT))
  embed = features_before_head(problem.model, "Dense_1")

  def by_hand(params):
    pairs_SxI = jnp.concatenate([embed(params["body"], x_s)[order],
                                 jax.nn.one_hot(y_s[order], WAYS)], -1)
    queries_QxI = jnp.concatenate([embed(params["body"], x_q),
                                   jnp.zeros((QUERIES, WAYS))], -1)
    sequences = jnp.concatenate([
        jnp.broadcast_to(pairs_SxI[None], (QUERIES,) + pairs_SxI.shape),
        queries_QxI[:, None]], 1)
    learner = snail.sequence_learner(config, WAYS)
    return learner.apply(params["sequence"], sequences)[:, -1]

  np.testing.assert_allclose(logits, jax.jit(by_hand)(meta_params),
                             rtol=1e-5, atol=1e-6)


def test_vmapped_meta_gradient_equals_a_python_loop_over_tasks():
  config, problem, meta_params, tasks, meta_grad_fn = setup()
  _, task_loss_and_metrics = snail.make_task_fns(config, problem)
  key = jax.random.key(4)
  grads, metrics = meta_grad_fn(meta_params, tasks, key, 0)
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda p, t, k: task_loss_and_metrics(p, t, k)[0]))
  keys, losses, looped = snail.task_keys(key, tasks), [], []
  for i in range(TASKS):
    loss, grad = loss_and_grad(meta_params, task_at(tasks, i), keys[i])
    losses.append(loss)
    looped.append(grad)
  expected = jax.tree.map(lambda *g: np.mean(np.stack(g), axis=0), *looped)
  np.testing.assert_allclose(metrics["meta_loss"], np.mean(losses), rtol=1e-5)
  assert jax.tree.structure(grads) == jax.tree.structure(meta_params)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  # Both parts learn: the body and the sequence learner get gradients.
  assert all(float(optax.tree.norm(grads[part])) > 0
             for part in ("body", "sequence"))
  # Each task has its own support order.
  assert len({tuple(np.asarray(jax.random.key_data(k)).ravel())
              for k in keys}) == TASKS


@pytest.mark.parametrize("backbone", ["snail", "lstm"])
def test_a_few_fixed_tasks_are_fit(backbone):
  _, _, params, tasks, meta_grad_fn = setup(backbone)
  optimizer = optax.adam(1e-2)

  @jax.jit
  def update(grads, state, params):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  opt_state, losses, accuracies = optimizer.init(params), [], []
  for step in range(150):  # a new support order at every step
    grads, metrics = meta_grad_fn(params, tasks, jax.random.key(step), step)
    params, opt_state = update(grads, opt_state, params)
    losses.append(metrics["meta_loss"])
    accuracies.append(metrics["post_accuracy"])
  losses = np.asarray(losses)
  assert losses[0] > 0.5, losses[0]
  assert losses[-10:].max() < 0.05, losses[-10:]
  np.testing.assert_array_equal(np.asarray(accuracies[-10:]), 1.0)


def test_evaluation_scores_the_eval_tasks_with_keys_from_the_eval_seed():
  config, problem, meta_params, _, meta_grad_fn = setup()
  results = snail.evaluate(config, problem, meta_params)
  assert list(results) == ["3-way 1-shot fresh"]
  curves = results["3-way 1-shot fresh"]
  assert list(curves["accuracy"]) == ["step_0"]  # no adaptation steps
  # The mean over the tasks, each read in the order of its key from
  # eval.seed: what the meta-gradient's metrics give with that key.
  tasks = problem.eval_tasks()["3-way 1-shot fresh"]
  _, metrics = meta_grad_fn(meta_params, tasks,
                            jax.random.key(config.eval.seed), 0)
  np.testing.assert_allclose(curves["accuracy"]["step_0"]["mean"],
                             metrics["post_accuracy"], rtol=1e-6)
  np.testing.assert_allclose(curves["loss"]["step_0"]["mean"],
                             metrics["post_loss"], rtol=1e-5)


@pytest.mark.parametrize("changes,field", [
    ({"inner.steps": 5}, "inner.steps"),
    ({"inner.lr": 0.4}, "inner.lr"),
    ({"inner.first_order": True}, "inner.first_order"),
    ({"algorithm.max_length": SUPPORT}, "algorithm.max_length"),
    ({"task.support_points": 2}, "algorithm.max_length"),
    ({"algorithm.head": "nowhere"}, "algorithm.head"),
])
def test_bad_settings_raise_config_error_naming_the_field(changes, field):
  with pytest.raises(ConfigError, match=re.escape(f"'{field}'")):
    build_problem_with(cluster_problem)(cluster_config(**changes))


@pytest.mark.parametrize("changes,field", [
    ({"algorithm.backbone": "gru"}, "algorithm.backbone"),
    ({"algorithm.attention_sizes": "3,8"}, "algorithm.attention_sizes"),
    ({"algorithm.max_length": "1"}, "algorithm.max_length"),
])
def test_bad_algorithm_fields_are_refused_when_set(changes, field):
  with pytest.raises(ConfigError, match=re.escape(f"'{field}'")):
    override(cluster_config(), changes)


def test_regression_tasks_are_refused():
  with pytest.raises(ConfigError, match="'algorithm'.*classification"):
    train.build_problem(tiny_sine_config({"algorithm": "snail"}))


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
def test_one_meta_step_on_real_omniglot_lowers_the_loss():
  # A one-block SNAIL: compiling TC blocks with the Conv4 costs seconds, and
  # they meet the meta-gradient on the cluster tasks above.
  config = override(cli.load_experiment("omniglot_5way1shot_budget_snail"), {
      "task.data_dir": DATA_DIR, "model.width": 8,
      "outer.meta_batch_size": 2, "algorithm.tc_filters": 8,
      "algorithm.attention_sizes": (8,)})
  algorithm, _, problem = train.build_problem(config)
  params = random_like(abstract_meta_params(config, problem))
  tasks = problem.train_sampler(jax.random.key(6))
  meta_grad_fn = jax.jit(algorithm.make_meta_grad(config, problem))
  grads, before = meta_grad_fn(params, tasks, jax.random.key(7), 0)
  optimizer = train.make_outer_optimizer(config)
  step = jax.jit(lambda grads, params: optax.apply_updates(
      params, optimizer.update(grads, optimizer.init(params), params)[0]))
  _, after = meta_grad_fn(step(grads, params), tasks, jax.random.key(7), 0)
  assert float(after["meta_loss"]) < float(before["meta_loss"]), (
      before["meta_loss"], after["meta_loss"])
