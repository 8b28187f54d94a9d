"""The meta-step on several devices: tasks sharded, meta-state replicated.

A 1-D device mesh with one axis, "tasks", splits the meta-batch: each device
adapts `meta_batch_size / num_devices` tasks and the mean over tasks (loss,
metrics, meta-gradient) becomes an all-reduce inserted by XLA. The meta-state
(params, optimizer state, step, key) is replicated, so every device applies
the same outer update. User code is unchanged: the per-task loss is vmapped
by `meta_objective` and the vmapped axis is the sharded one.

  mesh = make_task_mesh()              # all devices
  state = replicate_state(state, mesh)
  step = make_sharded_meta_step(meta_grad_fn, optimizer, mesh,
                                task_sampler=sampler)
  state, metrics = step(state)

The same code runs on several hosts (see `metajax/distributed.py`): the mesh
then spans every process's devices, tasks sampled in the step from the shared
key are identical everywhere, and host-fed tasks go through `shard_tasks`.
The meta-batch must be a multiple of the device count; otherwise a
ValueError naming `meta_batch_size` is raised before XLA compiles anything
(no padding: a padded task would have to be masked out of every mean).
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from metajax import backend
from metajax.core.meta_step import MetaGradFn, TaskSampler, make_meta_step
from metajax.core.types import MetaState, TaskBatch

TASK_AXIS = "tasks"


def make_task_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A 1-D mesh named "tasks" over the first `num_devices` devices.

  Args:
    num_devices: how many of `jax.devices()` (global, all hosts) to use;
      None or 0 means all of them.

  Returns:
    The `jax.sharding.Mesh`.
  """
  devices = jax.devices()
  if num_devices in (None, 0):
    num_devices = len(devices)
  if (not isinstance(num_devices, int) or isinstance(num_devices, bool)
      or not 1 <= num_devices <= len(devices)):
    raise ValueError(f"num_devices must be an int in [1, {len(devices)}] "
                     f"(the devices JAX sees), or 0/None for all; got "
                     f"{num_devices!r}")
  return Mesh(np.array(devices[:num_devices]), (TASK_AXIS,))


def task_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (task) axis split over the mesh, everything else whole."""
  return NamedSharding(mesh, P(TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _replicate(tree, mesh: Mesh):
  """Fresh replicated copies of `tree`'s leaves, via the host.

  Going through numpy never aliases the input's buffers and works for any
  placement of the input, on one or several processes (JAX then checks that
  every process passes equal values).
  """
  sharding = replicated(mesh)

  def put(leaf):
    if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(leaf)),
                                      impl=jax.random.key_impl(leaf))
    return jax.device_put(np.asarray(leaf), sharding)

  # A jitted copy gives the leaves the layouts the step's outputs have, so
  # the first call and later ones hit one dispatch-cache entry.
  copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree),
                 out_shardings=sharding)
  return copy(jax.tree.map(put, tree))


def replicate_state(state: MetaState, mesh: Mesh) -> MetaState:
  """`state` with every leaf replicated on every device of `mesh`.

  The copy shares no buffer with `state`, so donating it to the step leaves
  `state` usable. On several hosts every process must pass the same values
  (they do when the state comes from `init_meta_state` with the same seed).
  """
  return _replicate(state, mesh)


def check_divisible(meta_batch_size: int, mesh: Mesh):
  """ValueError unless the meta-batch splits evenly over the mesh."""
  num_devices = mesh.shape[TASK_AXIS]
  if meta_batch_size % num_devices:
    raise ValueError(
        f"meta_batch_size ({meta_batch_size}) must be a multiple of the "
        f"device count ({num_devices}) of the '{TASK_AXIS}' mesh: each device "
        f"takes meta_batch_size / {num_devices} tasks. Change "
        "meta_batch_size or num_devices.")


def _check_task_axis(tasks: TaskBatch, mesh: Mesh):
  """ValueError unless every leaf's (static) task axis splits over `mesh`."""
  for leaf in jax.tree.leaves(tasks):
    if np.ndim(leaf) < 1:
      raise ValueError("every leaf of a TaskBatch needs a leading task axis; "
                       f"got shape {np.shape(leaf)}")
    check_divisible(np.shape(leaf)[0], mesh)


def _constrained(tasks: TaskBatch, mesh: Mesh) -> TaskBatch:
  """`tasks` (inside jit) checked and constrained to the task sharding."""
  _check_task_axis(tasks, mesh)
  return jax.lax.with_sharding_constraint(tasks, task_sharding(mesh))


def shard_tasks(local_tasks: TaskBatch, mesh: Mesh) -> TaskBatch:
  """A global task batch, sharded over `mesh`, from each process's part.

  Args:
    local_tasks: host arrays of this process's consecutive slice of the
      global meta-batch (process `i` holds slice `i`); with one process, the
      whole batch.
    mesh: the task mesh.

  Returns:
    The `TaskBatch` of global `jax.Array`s sharded along the task axis.
  """
  sharding = task_sharding(mesh)
  num_local = sum(1 for d in mesh.devices.flat
                  if d.process_index == jax.process_index())
  for leaf in jax.tree.leaves(local_tasks):
    check_divisible(np.shape(leaf)[0] * mesh.size // num_local, mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      local_tasks)


def make_sharded_meta_step(
    meta_grad_fn: MetaGradFn,
    outer_optimizer,
    mesh: Mesh,
    task_sampler: Optional[TaskSampler] = None,
    steps_per_call: int = 1,
    nonfinite_policy: str = "stop",
):
  """`make_meta_step`, jitted over `mesh` with the tasks sharded.

  Args:
    meta_grad_fn: as for `make_meta_step`.
    outer_optimizer: as for `make_meta_step`.
    mesh: a mesh with a "tasks" axis, e.g. from `make_task_mesh`.
    task_sampler: optional `fn(key) -> TaskBatch` run inside the step; its
      output is constrained to the task sharding, so each device keeps (and
      adapts) only its own tasks. A `jax.tree_util.Partial` holding arrays
      (a dataset) passes them as replicated inputs, not as constants.
    steps_per_call: as for `make_meta_step`.
    nonfinite_policy: as for `make_meta_step`.

  Returns:
    The step, `step(state)` with a sampler, else `step(state, tasks)`, with
    `.lower(...)`, `.cache_size()` and `.jitted` like `make_meta_step`'s.
    The state must be replicated on `mesh` (`replicate_state`) and is
    donated; the returned state and metrics are replicated. Passed-in tasks
    are split over the mesh on the way in (on several hosts, build them with
    `shard_tasks`). A meta-batch that is not a multiple of the device count
    raises ValueError before anything is compiled.
  """
  # Validates the arguments now rather than at the first trace.
  make_meta_step(meta_grad_fn, outer_optimizer, task_sampler=task_sampler,
                 steps_per_call=steps_per_call,
                 nonfinite_policy=nonfinite_policy, jit=False)
  make_pure_step = functools.partial(
      make_meta_step, meta_grad_fn, outer_optimizer,
      steps_per_call=steps_per_call, nonfinite_policy=nonfinite_policy,
      jit=False)
  constrain = functools.partial(_constrained, mesh=mesh)
  state_sharding, tasks_sharding = replicated(mesh), task_sharding(mesh)

  if task_sampler is None:
    pure_step = make_pure_step()
    compiled = jax.jit(
        lambda state, tasks: pure_step(state, constrain(tasks)),
        in_shardings=(state_sharding, tasks_sharding),
        out_shardings=state_sharding, donate_argnums=0,
        compiler_options=backend.compiler_options())

    def place(tasks):  # Checked before dispatch; no-op if already sharded.
      _check_task_axis(tasks, mesh)
      return jax.device_put(tasks, tasks_sharding)

    def step(state, tasks):
      return compiled(state, place(tasks))

    step.lower = lambda state, tasks: compiled.lower(state, place(tasks))
  else:
    def sampled_steps(state, sampler):
      constrained = lambda key: constrain(sampler(key))
      return make_pure_step(task_sampler=constrained)(state)

    sampler = (task_sampler
               if isinstance(task_sampler, jax.tree_util.Partial)
               else jax.tree_util.Partial(task_sampler))
    sampler = _replicate(sampler, mesh)  # Once, not per call.
    compiled = jax.jit(sampled_steps,
                       in_shardings=(state_sharding, state_sharding),
                       out_shardings=state_sharding, donate_argnums=0,
                       compiler_options=backend.compiler_options())

    def step(state):
      return compiled(state, sampler)

    step.lower = lambda state: compiled.lower(state, sampler)
  step.jitted = compiled
  step.cache_size = compiled._cache_size  # pylint: disable=protected-access
  return step
