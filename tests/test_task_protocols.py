"""The regression tasks and meta-test protocols are the ones the README and
the experiments' docstrings state.

Sine (MAML section 5.1): y = A sin(x - phase), A ~ U[0.1, 5], phase ~
U[0, pi], x ~ U[-5, 5]; meta-test on 600 fixed tasks from `eval.seed`, K = 5
and 10 support points, 100 query points. Lines (`seed_linear`): y = a x + b +
N(0, noise_std^2). The checks read the task parameters back from the sampled
points (a least-squares fit), so they test the data a run sees, not the
sampler's own formulas.
"""
import math

import jax
import numpy as np
import pytest

from experiments import seed_linear, sine
from metajax.core.meta_step import tasks_of_step
from metajax.tasks.regression_sampling import SineTasks, sample_regression_tasks
from metajax.training import trainer
from metajax.training.config import override


def _problem(config):
  return trainer.build_problem(config)[2]


def _points(tasks):
  """x and y of support and query together, each `(num_tasks, points)`."""
  x = np.concatenate([tasks.support[0], tasks.query[0]], axis=1)[..., 0]
  y = np.concatenate([tasks.support[1], tasks.query[1]], axis=1)[..., 0]
  return x.astype(np.float64), y.astype(np.float64)


def _fit(features_TxPxF, y_TxP):
  """Per-task least squares: coefficients `(T, F)` and residuals `(T, P)`."""
  gram = np.einsum("tpf,tpg->tfg", features_TxPxF, features_TxPxF)
  moments_TxFx1 = np.einsum("tpf,tp->tf", features_TxPxF, y_TxP)[..., None]
  coef = np.linalg.solve(gram, moments_TxFx1)[..., 0]
  return coef, y_TxP - np.einsum("tpf,tf->tp", features_TxPxF, coef)


def _sine_parameters(tasks):
  """`(A, phase, x, largest residual)` of y = A sin(x - phase) fitted per
  task: A sin(x - phase) = A cos(phase) sin x - A sin(phase) cos x."""
  x, y = _points(tasks)
  coef, residual = _fit(np.stack([np.sin(x), np.cos(x)], axis=-1), y)
  amplitude = np.hypot(coef[:, 0], coef[:, 1])
  phase = np.arctan2(-coef[:, 1], coef[:, 0])
  return amplitude, phase, x, np.abs(residual).max()


def _assert_covers(values, low, high, tolerance):
  """All of `values` in [low, high], and both ends nearly reached (a range
  narrower than the stated one fails)."""
  assert values.min() >= low - tolerance and values.max() <= high + tolerance
  width = high - low
  assert values.min() < low + 0.02 * width and values.max() > high - 0.02 * width


def test_sine_config_has_the_papers_ranges_and_protocol():
  config = sine.get_config()
  task = config.task
  assert (task.amplitude_range, task.phase_range, task.x_range) == (
      (0.1, 5.0), (0.0, math.pi), (-5.0, 5.0))
  assert (task.support_points, task.query_points) == (10, 10)
  assert task.eval_shots == (5, 10) and task.eval_query_points == 100
  assert (config.eval.num_tasks, config.eval.seed,
          config.eval.inner_steps) == (600, 1234, (1, 5, 10))


@pytest.mark.parametrize("source", ["train", "K=5", "K=10"])
def test_sine_tasks_are_shifted_sines_in_the_papers_ranges(source):
  problem = _problem(sine.get_config())
  if source == "train":  # 24 meta-batches of 25 tasks: 600, like eval
    batches = jax.vmap(problem.train_sampler)(
        jax.random.split(jax.random.key(0), 24))
    tasks = jax.tree.map(lambda b: b.reshape((-1,) + b.shape[2:]), batches)
  else:
    tasks = problem.eval_tasks()[source]
  amplitude, phase, x, residual = _sine_parameters(tasks)
  assert amplitude.shape == (600,)
  assert residual < 1e-5  # support and query: one sine per task
  _assert_covers(amplitude, 0.1, 5.0, 1e-5)
  _assert_covers(phase, 0.0, math.pi, 1e-5)
  _assert_covers(x, -5.0, 5.0, 0.0)


def test_sine_sampler_returns_the_amplitude_and_phase_it_used():
  tasks, params = sample_regression_tasks(
      SineTasks(), jax.random.key(3), num_tasks=50, num_support=5,
      num_query=7)
  amplitude, phase, _, _ = _sine_parameters(tasks)
  np.testing.assert_allclose(amplitude, params["amplitude"], rtol=1e-5)
  np.testing.assert_allclose(phase, params["phase"], atol=1e-5)


def test_sine_evaluation_has_k5_and_k10_with_100_query_points():
  sets = _problem(sine.get_config()).eval_tasks()
  assert sets.keys() == {"K=5", "K=10"}
  for shots in (5, 10):
    tasks = sets[f"K={shots}"]
    assert [l.shape for l in tasks.support] == [(600, shots, 1)] * 2
    assert [l.shape for l in tasks.query] == [(600, 100, 1)] * 2


def test_eval_tasks_come_from_eval_seed_not_run_seed():
  base = sine.get_config()
  other_run = override(base, {"run.seed": 7})
  other_eval = override(base, {"eval.seed": 1235})
  tasks = {name: _problem(config).eval_tasks()["K=5"] for name, config in
           (("base", base), ("run", other_run), ("eval", other_eval))}
  for a, b in zip(jax.tree.leaves(tasks["base"]),
                  jax.tree.leaves(tasks["run"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(tasks["base"]),
                  jax.tree.leaves(tasks["eval"])):
    assert not np.any(np.asarray(a) == np.asarray(b))
  # The training tasks, for their part, follow run.seed.
  first = {}
  for name, config in (("base", base), ("run", other_run)):
    run = trainer.build_run(config)
    first[name] = tasks_of_step(run.state.key, 0, run.problem.train_sampler)
  assert not np.any(np.asarray(first["base"].support[0])
                    == np.asarray(first["run"].support[0]))


def _linear_eval_points(noise_std):
  config = override(seed_linear.get_config(), {"task.noise_std": noise_std})
  return _points(_problem(config).eval_tasks()["K=10"])


def test_linear_tasks_are_lines_in_their_ranges():
  config = seed_linear.get_config()
  task = config.task
  assert (task.slope_range, task.intercept_range, task.x_range,
          task.noise_std) == ((-3.0, 3.0), (-3.0, 3.0), (0.0, 1.0), 0.1)
  x, y = _linear_eval_points(0.0)
  coef, residual = _fit(np.stack([x, np.ones_like(x)], axis=-1), y)
  assert np.abs(residual).max() < 1e-5  # noise 0: exact lines
  _assert_covers(coef[:, 0], -3.0, 3.0, 1e-4)
  _assert_covers(coef[:, 1], -3.0, 3.0, 1e-4)
  _assert_covers(x, 0.0, 1.0, 0.0)


def test_linear_noise_has_the_configured_std():
  x_clean, y_clean = _linear_eval_points(0.0)
  x_noisy, y_noisy = _linear_eval_points(0.1)
  _, y_three = _linear_eval_points(0.3)
  np.testing.assert_array_equal(x_noisy, x_clean)  # the same tasks and x
  noise = y_noisy - y_clean
  # The same normal draws, scaled by noise_std.
  np.testing.assert_allclose(y_three - y_clean, 3 * noise, rtol=0, atol=2e-6)
  # 600 tasks x 110 points of N(0, 0.1^2): the sample std's relative error
  # is about 1 / sqrt(2 * 66000) = 0.3%, its mean's error 0.0004.
  assert noise.shape == (600, 110)
  assert abs(noise.mean()) < 0.0015
  np.testing.assert_allclose(noise.std(), 0.1, rtol=0.01)
  # Drawn per point, not per task: the spread within each task is the same.
  np.testing.assert_allclose(noise.std(axis=1).mean(), 0.1, rtol=0.02)
  # Training tasks get it too.
  keys = jax.random.key(5)
  train = {std: _points(_problem(override(
      seed_linear.get_config(), {"task.noise_std": std})).train_sampler(keys))
           for std in (0.0, 0.1)}
  train_noise = train[0.1][1] - train[0.0][1]
  np.testing.assert_array_equal(train[0.1][0], train[0.0][0])
  assert train_noise.shape == (25, 20) and np.all(train_noise != 0)
  np.testing.assert_allclose(train_noise.std(), 0.1, rtol=0.15)
