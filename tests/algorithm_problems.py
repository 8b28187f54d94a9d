"""Tiny problems shared by the algorithm tests (not a test module)."""
import jax
import jax.numpy as jnp

import metajax as mj
from experiments import sine
from metajax import algorithms
from metajax.models import MLP
from metajax.backend import PORTABLE
from metajax.core.types import TaskBatch
from metajax.tasks.base import Problem
from metajax.training.config import override, validate


def tiny_sine_config(changes=None, **short):
  """A sine config small enough to compile and step in about a second.

  `changes` maps dotted config names to values; keyword arguments are the
  same with `__` for the dot (`inner__steps=2`).
  """
  base = override(sine.get_config(), {
      "model.hidden_sizes": (8,), "outer.meta_batch_size": 4,
      "task.support_points": 5, "task.query_points": 5,
      "outer.num_meta_steps": 20, "outer.steps_per_call": 1,
      "run.log_every": 10, "eval.num_tasks": 20,
      "task.eval_query_points": 10, "eval.inner_steps": (1, 2)})
  changes = dict(changes or {})
  changes.update({k.replace("__", "."): v for k, v in short.items()})
  return override(base, changes)


def tanh_params_and_tasks(hidden=(5,), num_tasks=2, points=6, seed=3):
  """float64 tanh-MLP params, its MSE loss and random regression tasks."""
  model = MLP(hidden_sizes=hidden, activation="tanh")
  params = model.init(jax.random.key(seed), jnp.zeros((1, 1)))
  params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
  keys = jax.random.split(jax.random.key(seed + 1), 4)
  shape = (num_tasks, points, 1)
  tasks = TaskBatch(
      (jax.random.normal(keys[0], shape), jax.random.normal(keys[1], shape)),
      (jax.random.normal(keys[2], shape), jax.random.normal(keys[3], shape)))
  return params, mj.mse_loss(model.apply), tasks


def cluster_problem(config, ways=3, signal_dims=2, noise_dims=6):
  """N-way classification of Gaussian clusters hidden among noisy inputs.

  Each task draws `ways` class means in `signal_dims` dimensions; inputs
  append `noise_dims` dimensions of large noise, so an embedding must learn
  to ignore them. Labels are 0..N-1, class-major, like Omniglot's tasks.
  """
  shots, queries = config.task.support_points, config.task.query_points
  dims = signal_dims + noise_dims
  model = MLP(hidden_sizes=(16,), output_size=ways, activation="tanh")

  def sampler(key):
    k_mean, k_signal, k_noise = jax.random.split(key, 3)
    num_tasks, points = config.outer.meta_batch_size, shots + queries
    means_TxNx1xS = 2.0 * jax.random.normal(
        k_mean, (num_tasks, ways, 1, signal_dims))
    signal = means_TxNx1xS + 0.3 * jax.random.normal(
        k_signal, (num_tasks, ways, points, signal_dims))
    noise = 3.0 * jax.random.normal(k_noise,
                                    (num_tasks, ways, points, noise_dims))
    x_TxNxPxD = jnp.concatenate([signal, noise], axis=-1)
    labels_TxNxP = jnp.broadcast_to(
        jnp.arange(ways)[None, :, None], (num_tasks, ways, points))
    split = lambda a, lo, hi: a[:, :, lo:hi].reshape(
        (num_tasks, ways * (hi - lo)) + a.shape[3:])
    return TaskBatch(
        (split(x_TxNxPxD, 0, shots), split(labels_TxNxP, 0, shots)),
        (split(x_TxNxPxD, shots, points), split(labels_TxNxP, shots, points)))

  def eval_tasks(split="test", num_tasks=None):
    """Fresh tasks from the sampler (a fixed key), meta-batch by meta-batch."""
    del split
    count = num_tasks or config.eval.num_tasks
    draws = -(-count // config.outer.meta_batch_size)
    batches = jax.vmap(sampler)(jax.random.split(
        jax.random.key(config.eval.seed), draws))
    tasks = jax.tree.map(lambda b: b.reshape((-1,) + b.shape[2:])[:count],
                         batches)
    return {f"{ways}-way {shots}-shot fresh": tasks}

  def no_evaluation(*args, **kwargs):
    raise NotImplementedError("the cluster problem has no adaptation protocol")

  return Problem(
      kind="classification", model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, dims))),
      **mj.classification_fns(model.apply), train_sampler=sampler,
      evaluate=no_evaluation, eval_tasks=eval_tasks,
      formulations=PORTABLE, num_classes=ways)


def take_steps(run, calls, state=None):
  """`calls` calls of `run`'s step from `state` (default `run.state`), the
  tasks carried as the trainer carries them (`Run.call`). Returns `(state,
  [metrics of each call])`."""
  state = run.state if state is None else state
  history = []
  tasks = run.first_tasks(state)
  for _ in range(calls):
    state, tasks, metrics = run.call(state, tasks)
    history.append(metrics)
  return state, history


def build_problem_with(make_problem):
  """A stand-in for `trainer.build_problem` that builds `make_problem(config)`
  instead of the config's task, validating the config and running the
  algorithm's check as `build_problem` does (monkeypatch it in)."""
  def build_problem(config, backend_name=None):
    del backend_name
    validate(config)
    algorithm = algorithms.get(config.algorithm.NAME)
    problem = make_problem(config)
    algorithm.check(config, problem)
    return algorithm, problem.formulations, problem
  return build_problem
