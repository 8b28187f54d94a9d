"""Runs sharded meta-steps in a fresh process; results go to a JSON file.

Started by tests/test_sharding.py, because the device count is fixed when JAX
starts (XLA_FLAGS=--xla_force_host_platform_device_count=N must be set
before `import jax`):

  python tests/multihost_worker.py devices OUT.json
      one process with several CPU devices: sharded vs single-device steps,
      the non-divisible error, where the tasks live, the trainer hook.
  METAJAX_COORDINATOR=127.0.0.1:PORT METAJAX_NUM_PROCESSES=2 \\
  METAJAX_PROCESS_ID=i python tests/multihost_worker.py multihost OUT.json
      one of several processes (CPU collectives over gloo): sharded steps on
      the global mesh, tasks sampled in the step and fed per host.
"""
# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import json
import sys

import jax

from metajax.parallel import distributed

if __name__ == "__main__":
  # Must precede every other JAX call.
  distributed.initialize_from_env()

import jax.numpy as jnp
import numpy as np
import optax

import metajax as mj
from metajax.parallel import sharding
from metajax.models import MLP
from metajax.tasks import sample_sine_tasks

META_BATCH = 8
NUM_STEPS = 3


@dataclasses.dataclass(frozen=True)
class Problem:
  """Tiny second-order MAML on sine tasks, shared by tests and workers.

  The outer optimizer is SGD, whose update scales with the gradient: a
  sharded step that summed the devices' gradients instead of averaging
  them would move the params `num_devices` times as far (Adam would hide
  that, being invariant to the gradient's scale). The steps' `grad_norm`
  is compared too, which catches it under any optimizer.
  """
  meta_grad_fn: object
  optimizer: object
  sampler: object
  params: object


def tiny_problem(meta_batch_size: int = META_BATCH) -> Problem:
  model = MLP(hidden_sizes=(8,), activation="tanh")
  inner = mj.InnerLoop(loss_fn=mj.mse_loss(model.apply), num_steps=2,
                       learning_rate=0.05)
  return Problem(
      meta_grad_fn=mj.maml_meta_grad(inner), optimizer=optax.sgd(0.05),
      sampler=lambda key: sample_sine_tasks(key, meta_batch_size, 5, 5)[0],
      params=model.init(jax.random.key(0), jnp.zeros((1, 1))))


def fixed_tasks(step: int):
  """The host-fed batch of meta-step `step` (numpy, whole meta-batch)."""
  return jax.device_get(tiny_problem().sampler(jax.random.key(100 + step)))


def params_leaves(state):
  return [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)]


def run_steps(step_fn, state, tasks_per_step=None):
  """`NUM_STEPS` meta-steps; returns (host params leaves, meta-losses,
  gradient norms)."""
  losses, grad_norms = [], []
  for i in range(NUM_STEPS):
    args = () if tasks_per_step is None else (tasks_per_step(i),)
    state, metrics = step_fn(state, *args)
    losses.append(float(metrics["meta_loss"]))
    grad_norms.append(float(metrics["grad_norm"]))
  return params_leaves(state), losses, grad_norms


def fresh_state(problem: Problem):
  """A new initial state (steps donate theirs, so never share buffers)."""
  params = jax.tree.map(jnp.copy, problem.params)
  return mj.init_meta_state(params, problem.optimizer, jax.random.key(1))


def reference(problem: Problem, sampled: bool):
  """Plain single-device meta-steps (the ground truth)."""
  step = mj.make_meta_step(problem.meta_grad_fn, problem.optimizer,
                           task_sampler=problem.sampler if sampled else None)
  return run_steps(step, fresh_state(problem),
                   None if sampled else fixed_tasks)


def sharded(problem: Problem, mesh, sampled: bool, feed=None, record=None):
  """The same steps, sharded over `mesh`; `record` collects task shardings."""
  meta_grad_fn = problem.meta_grad_fn
  if record is not None:
    def meta_grad_fn(params, tasks, key, step):
      record.append("traced")  # Python side effect: once per trace.
      jax.debug.inspect_array_sharding(tasks.support[0], callback=record.append)
      return problem.meta_grad_fn(params, tasks, key, step)
  step = sharding.make_sharded_meta_step(
      meta_grad_fn, problem.optimizer, mesh,
      task_sampler=problem.sampler if sampled else None)
  state = sharding.replicate_state(fresh_state(problem), mesh)
  result = run_steps(step, state, None if sampled else feed)
  return result, step, state


def error_of(fn) -> str:
  try:
    fn()
  except ValueError as error:
    return str(error)
  return ""


def devices_mode() -> dict:
  problem, mesh = tiny_problem(), sharding.make_task_mesh()
  seen = []
  out = {"device_count": jax.device_count(),
         "ref_sampled": reference(problem, True),
         "ref_fed": reference(problem, False)}
  out["sharded_sampled"], step, state = sharded(problem, mesh, True,
                                                record=seen)
  hlo = step.lower(state).compile().as_text()
  out["num_traces"] = seen.count("traced")
  # inspect_array_sharding reports once per compilation.
  shardings = [s for s in seen if s != "traced"]
  out["sampled_task_sharding"] = [str(s.spec) for s in shardings]
  out["sampled_task_devices"] = [len(s.device_set) for s in shardings]
  out["hlo_all_reduce"] = "all-reduce" in hlo
  out["hlo_per_device_tasks"] = f"f32[{META_BATCH // mesh.size},5,1]" in hlo
  out["params_sharding"] = str(jax.tree.leaves(state.params)[0].sharding.spec)
  feed = lambda i: sharding.shard_tasks(fixed_tasks(i), mesh)
  out["sharded_fed"], _, _ = sharded(problem, mesh, False, feed=feed)
  out["fed_tasks_sharding"] = str(feed(0).support[0].sharding.spec)
  # Fused: three sharded steps in one call equal three single steps.
  fused = sharding.make_sharded_meta_step(
      problem.meta_grad_fn, problem.optimizer, mesh,
      task_sampler=problem.sampler, steps_per_call=NUM_STEPS)
  state = sharding.replicate_state(fresh_state(problem), mesh)
  state, metrics = fused(state)
  out["sharded_fused"] = (params_leaves(state),
                          np.asarray(metrics["meta_loss"]).tolist(),
                          np.asarray(metrics["grad_norm"]).tolist())
  # A meta-batch of 6 on 4 devices: errors from both entry points.
  odd = tiny_problem(meta_batch_size=6)
  out["odd_sampled_error"] = error_of(lambda: sharded(odd, mesh, True))
  odd_tasks = lambda i: odd.sampler(jax.random.key(i))
  out["odd_fed_error"] = error_of(
      lambda: sharded(odd, mesh, False, feed=odd_tasks))
  out.update(trainer_mode())
  return out


def run_trainer_steps(run):
  """`run_steps` for a trainer `Run`, whose step may carry prefetched tasks."""
  state, tasks = run.state, run.first_tasks(run.state)
  losses, grad_norms = [], []
  for _ in range(NUM_STEPS):
    state, tasks, metrics = run.call(state, tasks)
    losses.append(float(metrics["meta_loss"]))
    grad_norms.append(float(metrics["grad_norm"]))
  return params_leaves(state), losses, grad_norms


def trainer_mode() -> dict:
  """`build_run` with `run.num_devices` 4 (sharded) and 1 (plain), and
  errors. The trainer keeps its default outer optimizer (Adam, what runs
  use); the compared `grad_norm` catches a summed meta-gradient there."""
  from metajax.training import trainer as train
  from metajax.training.config import Config, ConfigError, override
  config = override(Config(), {
      "task": "sine", "model.hidden_sizes": (8,),
      "outer.meta_batch_size": META_BATCH, "task.support_points": 5,
      "task.query_points": 5, "outer.num_meta_steps": NUM_STEPS,
      "outer.steps_per_call": 1, "run.log_every": 1})
  out = {}
  for num_devices in (1, 4):
    run = train.build_run(override(config, {"run.num_devices": num_devices}))
    out[f"trainer_{num_devices}"] = run_trainer_steps(run)
  for name, changes in (("odd", {"run.num_devices": 4,
                                 "outer.meta_batch_size": 6}),
                        ("too_many", {"run.num_devices": 5})):
    try:
      train.build_run(override(config, changes))
      out[f"trainer_{name}_error"] = ""
    except ConfigError as error:
      out[f"trainer_{name}_error"] = str(error)
  return out


def multihost_mode() -> dict:
  problem, mesh = tiny_problem(), sharding.make_task_mesh()
  local_slice = lambda i: jax.tree.map(  # This process's consecutive tasks.
      lambda x: np.split(x, jax.process_count())[jax.process_index()],
      fixed_tasks(i))
  feed = lambda i: sharding.shard_tasks(local_slice(i), mesh)
  return {
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "sharded_sampled": sharded(problem, mesh, True)[0],
      "sharded_fed": sharded(problem, mesh, False, feed=feed)[0],
  }


if __name__ == "__main__":
  jax.config.update("jax_numpy_rank_promotion", "raise")
  mode, out_path = sys.argv[1], sys.argv[2]
  results = devices_mode() if mode == "devices" else multihost_mode()
  with open(out_path, "w") as f:
    json.dump(results, f)
