"""Regression task families: MAML's sine waves and the seed's lines.

Every sampler is a pure function of a key, so it runs inside the jitted
meta-step. A sampled batch is a `TaskBatch` of `(x_TxKx1, y_TxKx1)` pairs and
the tasks' true parameters are returned alongside for plotting and checks.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from metajax.core.types import TaskBatch


def _check_positive(name, value):
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_range(name, low, high):
  if not (math.isfinite(low) and math.isfinite(high) and low <= high):
    raise ValueError(f"{name} must be a finite range (low <= high), got "
                     f"({low}, {high})")


@dataclasses.dataclass(frozen=True)
class SineTasks:
  """y = A sin(x - phase), as in MAML section 5.1."""
  amplitude_range: tuple = (0.1, 5.0)
  phase_range: tuple = (0.0, math.pi)
  x_range: tuple = (-5.0, 5.0)
  noise_std: float = 0.0

  def __post_init__(self):
    _check_range("amplitude_range", *self.amplitude_range)
    _check_range("phase_range", *self.phase_range)
    _check_range("x_range", *self.x_range)

  def sample_params(self, key, num_tasks):
    ka, kp = jax.random.split(key)
    amp = jax.random.uniform(ka, (num_tasks,), minval=self.amplitude_range[0],
                             maxval=self.amplitude_range[1])
    phase = jax.random.uniform(kp, (num_tasks,), minval=self.phase_range[0],
                               maxval=self.phase_range[1])
    return {"amplitude": amp, "phase": phase}

  def function(self, task_params, x):
    return task_params["amplitude"] * jnp.sin(x - task_params["phase"])

  def sample_x(self, key, shape):
    return jax.random.uniform(key, shape, minval=self.x_range[0],
                              maxval=self.x_range[1])


@dataclasses.dataclass(frozen=True)
class LinearTasks:
  """y = a x + b + N(0, noise_std^2), x ~ U[x_range]: the seed's example."""
  slope_range: tuple = (-3.0, 3.0)
  intercept_range: tuple = (-3.0, 3.0)
  x_range: tuple = (0.0, 1.0)
  noise_std: float = 0.1

  def __post_init__(self):
    _check_range("slope_range", *self.slope_range)
    _check_range("intercept_range", *self.intercept_range)
    _check_range("x_range", *self.x_range)
    if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
      raise ValueError(f"noise_std must be finite and >= 0, got {self.noise_std}")

  def sample_params(self, key, num_tasks):
    ka, kb = jax.random.split(key)
    a = jax.random.uniform(ka, (num_tasks,), minval=self.slope_range[0],
                           maxval=self.slope_range[1])
    b = jax.random.uniform(kb, (num_tasks,), minval=self.intercept_range[0],
                           maxval=self.intercept_range[1])
    return {"slope": a, "intercept": b}

  def function(self, task_params, x):
    return task_params["slope"] * x + task_params["intercept"]

  def sample_x(self, key, shape):
    return jax.random.uniform(key, shape, minval=self.x_range[0],
                              maxval=self.x_range[1])


def sample_regression_tasks(family, key, num_tasks, num_support, num_query):
  """Samples `num_tasks` tasks with `num_support`/`num_query` points each.

  Returns:
    `(TaskBatch(support=(x, y), query=(x, y)), task_params)`; x and y have
    shape `(num_tasks, num_points, 1)`.
  """
  _check_positive("num_tasks", num_tasks)
  _check_positive("num_support", num_support)
  _check_positive("num_query", num_query)
  k_params, k_x, k_noise = jax.random.split(key, 3)
  task_params = family.sample_params(k_params, num_tasks)
  num_points = num_support + num_query
  x_TxPx1 = family.sample_x(k_x, (num_tasks, num_points, 1))
  broadcast = jax.tree.map(lambda v: v[:, None, None], task_params)
  y_TxPx1 = family.function(broadcast, x_TxPx1)
  if family.noise_std > 0:
    y_TxPx1 = y_TxPx1 + family.noise_std * jax.random.normal(
        k_noise, y_TxPx1.shape)
  support = (x_TxPx1[:, :num_support], y_TxPx1[:, :num_support])
  query = (x_TxPx1[:, num_support:], y_TxPx1[:, num_support:])
  return TaskBatch(support, query), task_params


def sample_sine_tasks(key, num_tasks, num_support, num_query,
                      family: SineTasks = SineTasks()):
  """MAML sine tasks; see `sample_regression_tasks`."""
  return sample_regression_tasks(family, key, num_tasks, num_support, num_query)


def sample_linear_tasks(key, num_tasks, num_support, num_query,
                        family: LinearTasks = LinearTasks()):
  """Seed linear-regression tasks; see `sample_regression_tasks`."""
  return sample_regression_tasks(family, key, num_tasks, num_support, num_query)
