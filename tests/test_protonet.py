"""Prototypical Networks on synthetic Gaussian-cluster classification."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithm_problems import (
    build_problem_with, cluster_problem, take_steps, tiny_sine_config)
from metajax.training import trainer as train
from metajax.algorithms import protonet
from metajax.training.config import ConfigError
from metajax.models import MLP


def cluster_config(**changes):
  """protonet on `cluster_problem` (3 ways): 4 shots and 5 queries per class."""
  return tiny_sine_config({
      "algorithm": "protonet", "task.support_points": 4,
      "task.query_points": 5, "outer.meta_batch_size": 8, "outer.lr": 3e-3,
      "eval.num_tasks": 64}, **changes)


def test_prototypes_and_logits_match_numpy():
  rng = np.random.default_rng(0)
  embeddings, labels = rng.normal(size=(12, 4)), rng.permutation(12) % 3
  queries = rng.normal(size=(5, 4))
  expected = np.stack([embeddings[labels == k].mean(0) for k in range(3)])
  logits = -np.array([[np.sum((q - p) ** 2) for p in expected] for q in queries])
  protos = protonet.prototypes(jnp.asarray(embeddings), jnp.asarray(labels), 3)
  np.testing.assert_allclose(protos, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(protonet.prototype_logits(jnp.asarray(queries),
                                                       protos), logits,
                             rtol=1e-5, atol=1e-5)


def test_default_embedding_is_the_input_of_the_head():
  model = MLP(hidden_sizes=(6, 4), output_size=3, activation="tanh")
  params = model.init(jax.random.key(0), jnp.zeros((1, 2)))
  x = jax.random.normal(jax.random.key(1), (5, 2))
  embed = protonet.features_before_head(model, "Dense_2")(params, x)
  dense = lambda name, h: (h @ params["params"][name]["kernel"]
                           + params["params"][name]["bias"][None, :])
  expected = jnp.tanh(dense("Dense_1", jnp.tanh(dense("Dense_0", x))))
  np.testing.assert_allclose(embed, expected, rtol=1e-6)


def test_regression_tasks_are_rejected_with_a_clear_error():
  with pytest.raises(ConfigError, match="classification"):
    train.build_problem(tiny_sine_config(algorithm="protonet"))


def test_training_improves_query_accuracy(monkeypatch):
  config = cluster_config(outer__num_meta_steps=120,
                          outer__steps_per_call=40, run__log_every=40)
  monkeypatch.setattr(train, "build_problem",
                      build_problem_with(cluster_problem))
  run = train.build_run(config)
  assert run.problem.kind == "classification" and run.problem.num_classes == 3
  before = protonet.evaluate(config, run.problem, run.state.params)
  state, history = take_steps(
      run, config.outer.num_meta_steps // config.outer.steps_per_call)
  metrics = history[-1]
  after = protonet.evaluate(config, run.problem, state.params)
  key = "3-way 4-shot fresh"
  acc_before = before[key]["accuracy"]["step_0"]["mean"]
  acc_after = after[key]["accuracy"]["step_0"]["mean"]
  assert int(state.nonfinite_count) == 0 and run.step_fn.cache_size() == 1
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
  assert acc_after > acc_before + 0.2, (acc_before, acc_after)
