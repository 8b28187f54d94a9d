"""Validation during training never scores a meta-test task."""
import jax
import numpy as np
import pytest

from algorithm_problems import tiny_sine_config
from metajax.tasks import regression
from metajax.backend import PORTABLE


def _inputs(tasks_by_setting):
  return {setting: np.asarray(tasks.support[0])
          for setting, tasks in tasks_by_setting.items()}


def test_validation_and_test_tasks_differ_and_test_tasks_stay_fixed():
  config = tiny_sine_config({"eval.num_tasks": 50})
  problem = regression.SINE.build(config, PORTABLE)
  test = _inputs(problem.eval_tasks("test"))
  val = _inputs(problem.eval_tasks("val", 50))
  for setting in test:
    # No validation task shares a support input with any test task.
    assert not np.intersect1d(test[setting].ravel(),
                              val[setting].ravel()).size, setting
  # The meta-test tasks are still those of eval.seed's own key.
  family = regression.family_of(config.task)
  for shots in config.task.eval_shots:
    key = jax.random.fold_in(jax.random.key(config.eval.seed), shots)
    expected, _ = regression.sample_regression_tasks(
        family, key, 50, shots, config.task.eval_query_points)
    np.testing.assert_array_equal(test[f"K={shots}"],
                                  np.asarray(expected.support[0]))
  other_seed = regression.SINE.build(
      tiny_sine_config({"eval.num_tasks": 50, "eval.seed": 7}), PORTABLE)
  assert not np.array_equal(_inputs(other_seed.eval_tasks("val", 50))["K=5"],
                            val["K=5"])


def test_unknown_split_is_an_error():
  problem = regression.SINE.build(tiny_sine_config(), PORTABLE)
  with pytest.raises(ValueError, match="'train'"):
    problem.eval_tasks("train")
