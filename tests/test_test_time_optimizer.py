"""Meta-test tasks adapt with the inner optimizer the run meta-trained with,
and results.json says which."""
import dataclasses

import jax
import numpy as np
import optax
import pytest

import metajax as mj
from algorithm_problems import tiny_sine_config
from metajax import algorithms
from metajax.algorithms import _partition, anil
from metajax.core.inner import differentiable_adam
from metajax.training import trainer as train

EVAL = {"eval.num_tasks": 6, "eval.inner_steps": (3,),
        "task.eval_shots": (5,)}


def _curve(run, params, inner):
  """The K=5 query-MSE curve of `run`'s protocol with `inner`."""
  (curve,) = run.problem.evaluate(params, inner, "test", 6).values()
  return np.array([stats["mean"] for stats in curve.values()])


@pytest.mark.parametrize("algorithm", ["maml", "anil"])  # both code paths
def test_adam_trained_runs_adapt_with_adam_at_test(algorithm):
  config = tiny_sine_config({"algorithm": algorithm, "inner.optimizer": "adam",
                             "inner.lr": 0.05, **EVAL})
  run = train.build_run(config)
  meta_params = jax.tree.map(np.array, run.state.params)
  params, inner = run.algorithm.eval_adaptation(config, run.problem,
                                                meta_params)
  # What the protocol runs equals an inner loop built by hand with Adam on
  # the adapted leaves (all of them, or the head for ANIL) ...
  adam = differentiable_adam(0.05)
  if algorithm == "anil":
    head_mask = _partition.mask_of(
        meta_params, anil.partition_fn(config, run.problem))
    labels = jax.tree.map(lambda m: "adapt" if m else "freeze", head_mask)
    adam = optax.multi_transform(
        {"adapt": adam, "freeze": optax.set_to_zero()}, labels)
  by_hand = dataclasses.replace(inner, optimizer=adam)
  got = _curve(run, params, inner)
  np.testing.assert_allclose(got, _curve(run, params, by_hand), rtol=1e-6)
  # ... and differs from plain SGD at the same rate, so the check can fail.
  sgd = dataclasses.replace(inner, optimizer=None, learning_rate=0.05)
  assert not np.allclose(got, _curve(run, params, sgd), rtol=1e-3)


def test_results_record_the_test_time_optimizer(tmp_path):
  config = tiny_sine_config({"inner.optimizer": "adam", "inner.lr": 0.05,
                             "outer.num_meta_steps": 2, **EVAL})
  results = train.train(config, str(tmp_path / "run"), progress=False)
  assert results["test_time_optimizer"] == "adam at inner.lr=0.05"
  metasgd = algorithms.get("metasgd")
  assert metasgd.eval_optimizer(tiny_sine_config({"algorithm": "metasgd"})) == (
      "sgd at the learned per-parameter rates")


def test_eval_line_search_wraps_the_test_time_optimizer():
  config = tiny_sine_config({"eval.line_search": True, "inner.lr": 0.05,
                             **EVAL})
  run = train.build_run(config)
  meta_params = jax.tree.map(np.array, run.state.params)
  params, searched = train.test_time_adaptation(run, meta_params)
  by_hand = dataclasses.replace(
      searched, optimizer=mj.with_line_search(optax.sgd(0.05)))
  np.testing.assert_allclose(_curve(run, params, searched),
                             _curve(run, params, by_hand), rtol=1e-6)
  assert train.test_time_optimizer(run) == (
      "sgd at inner.lr=0.05, backtracking line search on the support loss")
  plain = train.build_run(tiny_sine_config({"inner.lr": 0.05, **EVAL}))
  assert train.test_time_adaptation(plain, meta_params)[1].optimizer is None
