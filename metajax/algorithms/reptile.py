"""Reptile (Nichol, Achiam and Schulman, 2018): move toward adapted weights.

Each task is adapted with `inner_steps` steps of the inner optimizer
(`inner.optimizer`, `inner.lr`) on ALL of its data, support and query
concatenated: Reptile has no support/query split during meta-training, it
trains on whatever data a task has. Nothing is differentiated through the
inner loop.

Batched (default): the meta-"gradient" handed to the outer optimizer is
`theta - mean_t(phi_t)`, so outer SGD at rate epsilon is exactly Reptile's
`theta <- theta + epsilon * (mean_t(phi_t) - theta)`; Adam on it is the
common variant.

Serial (`algorithm.serial=true`, needs outer SGD): a `lax.scan` over the
meta-batch adapts task t from the current weights and interpolates
`theta <- theta + epsilon * (phi_t - theta)` with `epsilon = outer.lr`, one
task after another, as in the paper's Algorithm 1; the "gradient" is the
total displacement divided by epsilon, so the outer SGD step at `outer.lr`
lands exactly on the sequentially interpolated weights. With meta-batch 1
both versions coincide.

Mini-batches (`algorithm.inner_batch_size`, as the paper's Omniglot runs: 5
steps on batches of 10): each inner step sees that many of the task's
examples, passes over the data reshuffled with the meta-step's key.

Metrics: `pre_loss` is the query loss at theta (under `run.pre_metrics`),
`post_loss` (= `meta_loss`) the loss on the task's data after adaptation.
"""
import dataclasses

import jax
import jax.numpy as jnp

from metajax.algorithms.base import Algorithm, inner_loop
from metajax.core.objective import InnerLoop
from metajax.settings import (
    ConfigError, Section, non_negative_int, setting)


@dataclasses.dataclass(frozen=True)
class ReptileConfig(Section):
  """Reptile's `algorithm` section."""
  NAME = "reptile"
  serial: bool = setting(False, "interpolate task after task (needs outer "
                         "SGD; epsilon = outer.lr)")
  inner_batch_size: int = setting(
      0, "examples per inner step, drawn without replacement and reshuffled "
      "each pass over the task's data (0: all of it every step)",
      check=non_negative_int)


def check(config, problem):
  del problem
  if config.algorithm.serial and config.outer.optimizer != "sgd":
    raise ConfigError(
        "config field 'algorithm.serial': the serial interpolation uses "
        "epsilon = outer.lr and is Reptile only under outer.optimizer='sgd', "
        f"got outer.optimizer={config.outer.optimizer!r}")


def all_task_data(task):
  """Support and query concatenated along the example axis."""
  return jax.tree.map(lambda s, q: jnp.concatenate([s, q]), task.support,
                      task.query)


def step_batches(data, key, num_steps: int, batch_size: int):
  """`num_steps` mini-batches of `batch_size` examples of `data`, stacked:
  consecutive slices of independent shuffles of its examples, so each pass
  over the data sees every example once (Reptile's inner batches)."""
  num_examples = jax.tree.leaves(data)[0].shape[0]
  passes = -(-num_steps * batch_size // num_examples)
  order = jnp.concatenate([jax.random.permutation(k, num_examples)
                           for k in jax.random.split(key, passes)])
  index_SxB = order[:num_steps * batch_size].reshape(num_steps, batch_size)
  return jax.tree.map(lambda leaf: leaf[index_SxB], data)


def _adapt_task(params, task, key, inner: InnerLoop, batch_size: int):
  data = all_task_data(task)
  if batch_size:
    adapted = inner.run(params, step_batches(data, key, inner.num_steps,
                                             batch_size),
                        step_batches=True).params
  else:
    adapted = inner.run(params, data).params
  metrics = {"post_loss": inner.loss_fn(adapted, data)}
  if inner.pre_metrics:
    metrics["pre_loss"] = inner.loss_fn(params, task.query)
  return adapted, metrics


def _summary(metrics_T):
  metrics = jax.tree.map(jnp.mean, metrics_T)
  metrics["meta_loss"] = metrics["post_loss"]
  return metrics


def reptile_meta_grad(inner: InnerLoop, serial: bool = False,
                      epsilon: float = 1.0, inner_batch_size: int = 0):
  """Reptile's `meta_grad_fn(params, tasks, key, step) -> (grads, metrics)`.

  Args:
    inner: how each task is adapted (on support and query together).
    serial: interpolate task after task with `epsilon` (a `lax.scan`)
      instead of averaging the adapted weights of the whole batch.
    epsilon: the serial interpolation's outer step size.
    inner_batch_size: examples per inner step (`step_batches`, drawn with
      the step's key, one key per task); 0: all the task's data each step.
  """
  if serial and not epsilon > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon}")

  adapt_task = lambda params, task, key: _adapt_task(
      params, task, key, inner, inner_batch_size)

  def task_keys(tasks, key):
    return jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])

  def batched_grad_fn(params, tasks, key, step):
    del step
    adapted_T, metrics_T = jax.vmap(lambda t, k: adapt_task(params, t, k))(
        tasks, task_keys(tasks, key))
    grads = jax.tree.map(lambda p, a_T: p - jnp.mean(a_T, axis=0), params,
                         adapted_T)
    return grads, _summary(metrics_T)

  def serial_grad_fn(params, tasks, key, step):
    del step

    def interpolate(current, task_and_key):
      adapted, metrics = adapt_task(current, *task_and_key)
      current = jax.tree.map(lambda c, a: c + epsilon * (a - c), current,
                             adapted)
      return current, metrics

    final, metrics_T = jax.lax.scan(interpolate, params,
                                    (tasks, task_keys(tasks, key)))
    grads = jax.tree.map(lambda p, f: (p - f) / epsilon, params, final)
    return grads, _summary(metrics_T)

  return serial_grad_fn if serial else batched_grad_fn


def make_meta_grad(config, problem):
  inner = inner_loop(config, problem, first_order=True)
  return reptile_meta_grad(inner, serial=config.algorithm.serial,
                           epsilon=config.outer.lr,
                           inner_batch_size=config.algorithm.inner_batch_size)


ALGORITHM = Algorithm(name="reptile", family="optimization",
                      config_class=ReptileConfig,
                      make_meta_grad=make_meta_grad, check=check)
