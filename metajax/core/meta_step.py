"""The meta-step factory: one jitted `(state[, tasks]) -> (state, metrics)`.

An algorithm supplies a meta-gradient function
`meta_grad_fn(params, tasks, key, step) -> (grads, metrics)`; the factory
wraps it with the outer optax update, the step counter, the per-step key, a
finite guard and, optionally, in-jit task sampling and several fused
meta-steps.
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from metajax import backend
from metajax.core.losses import tree_is_finite
from metajax.core.types import MetaState, TaskBatch

PyTree = Any
MetaGradFn = Callable[[PyTree, TaskBatch, jax.Array, jax.Array], tuple]
TaskSampler = Callable[[jax.Array], TaskBatch]


def init_meta_state(params, outer_optimizer: optax.GradientTransformation,
                    key: jax.Array) -> MetaState:
  """The initial `MetaState` for `params` under `outer_optimizer`.

  The state holds copies of `params`: the meta-step donates (deletes) the
  state's buffers, and the caller's arrays stay usable.
  """
  params = jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), params)
  return MetaState(params=params, opt_state=outer_optimizer.init(params),
                   step=jnp.zeros((), jnp.int32), key=key,
                   nonfinite_count=jnp.zeros((), jnp.int32),
                   first_nonfinite_step=jnp.full((), -1, jnp.int32))


def _update(state: MetaState, tasks: TaskBatch, meta_grad_fn: MetaGradFn,
            outer_optimizer: optax.GradientTransformation,
            stop_on_nonfinite: bool):
  step_key = jax.random.fold_in(state.key, state.step)
  grads, metrics = meta_grad_fn(state.params, tasks,
                                jax.random.fold_in(step_key, 1), state.step)
  updates, opt_state = outer_optimizer.update(grads, state.opt_state,
                                              state.params)
  params = optax.apply_updates(state.params, updates)
  # The gradient norm is finite iff every gradient entry is (inf and NaN
  # propagate through it), so one scalar test replaces a test per leaf.
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(grad_norm) & tree_is_finite(metrics)
  # A non-finite step never reaches the state: the old params and optimizer
  # state are kept and the step is counted. Under the "stop" policy every
  # later update is refused too, so the state stays the last good one.
  apply = finite
  if stop_on_nonfinite:
    apply = jnp.logical_and(apply, state.first_nonfinite_step < 0)
  keep = lambda new, old: jnp.where(apply, new, old)
  params = jax.tree.map(keep, params, state.params)
  opt_state = jax.tree.map(keep, opt_state, state.opt_state)
  bad = jnp.logical_not(finite)
  first_bad = jnp.where(bad & (state.first_nonfinite_step < 0), state.step,
                        state.first_nonfinite_step)
  metrics["grad_norm"] = grad_norm
  metrics["nonfinite"] = bad.astype(jnp.int32)
  metrics["step"] = state.step
  metrics["first_nonfinite_step"] = first_bad
  return state._replace(
      params=params, opt_state=opt_state, step=state.step + 1,
      nonfinite_count=state.nonfinite_count + bad.astype(jnp.int32),
      first_nonfinite_step=first_bad), metrics


class PrefetchingStep(NamedTuple):
  """A meta-step that draws the next step's tasks inside each call.

  `state, next_tasks, metrics = step(state, tasks)`; the first call's tasks
  are `first_tasks(state)`. The caller carries the tasks from one call to
  the next. The tasks of a step depend only on `(state.key, state.step)`,
  so each call computes what the step given those tasks computes, bit for
  bit, and the plain sampling step the same up to float rounding (XLA
  compiles the meta-gradient of in-program tasks slightly differently);
  the next tasks are drawn beside the meta-gradient instead of before it.
  """
  step: Callable
  first_tasks: Callable

  def __call__(self, state, tasks):
    return self.step(state, tasks)

  def lower(self, state):
    return self.step.lower(state, self.first_tasks(state))

  def cache_size(self) -> int:
    return self.step.cache_size()


def tasks_of_step(key, step, sampler: TaskSampler) -> TaskBatch:
  """The tasks meta-step `step` trains on: `sampler(fold_in(fold_in(key,
  step), 0))`."""
  return sampler(jax.random.fold_in(jax.random.fold_in(key, step), 0))


def make_meta_step(
    meta_grad_fn: MetaGradFn,
    outer_optimizer: optax.GradientTransformation,
    task_sampler: Optional[TaskSampler] = None,
    steps_per_call: int = 1,
    nonfinite_policy: str = "stop",
    prefetch_tasks: bool = False,
    jit: bool = True,
):
  """Builds the meta-step once.

  Args:
    meta_grad_fn: `fn(params, tasks, key, step) -> (grads, metrics)`, e.g.
      from `metajax.maml_meta_grad`.
    outer_optimizer: optax optimizer of the meta-parameters.
    task_sampler: optional `fn(key) -> TaskBatch` run inside the step with
      the key of `tasks_of_step`. With a sampler the step is `step(state)`;
      without, `step(state, tasks)`.
    steps_per_call: fuse this many meta-steps into one compiled call with a
      `lax.scan` (needs `task_sampler`, which then draws all the fused
      steps' tasks at once, vmapped over their keys); metrics then have a
      leading axis.
    nonfinite_policy: "stop" freezes the state at the first non-finite
      loss or gradient (the trainer then stops and names the step); "skip"
      drops only the bad updates. Either way they are counted in the state.
    prefetch_tasks: with a sampler, unfused and jitted: return a
      `PrefetchingStep`, which draws the next step's tasks inside each call
      (the same results up to float rounding; a formulation
      `metajax.backend.for_backend` picks where it is faster).
    jit: return the `jax.jit`-compiled step with the state donated (it also
      has `.lower(state)` for cost analysis and `.cache_size()`).

  Returns:
    The meta-step function (a `PrefetchingStep` under `prefetch_tasks`).
  """
  if not isinstance(steps_per_call, int) or steps_per_call < 1:
    raise ValueError(f"steps_per_call must be an int >= 1, got {steps_per_call!r}")
  if nonfinite_policy not in ("stop", "skip"):
    raise ValueError("nonfinite_policy must be 'stop' or 'skip', got "
                     f"{nonfinite_policy!r}")
  if steps_per_call > 1 and task_sampler is None:
    raise ValueError("steps_per_call > 1 needs a task_sampler (tasks are "
                     "sampled inside the fused steps)")
  if prefetch_tasks and (task_sampler is None or steps_per_call > 1
                         or not jit):
    raise ValueError("prefetch_tasks needs a task_sampler, steps_per_call=1 "
                     "and jit=True")

  def update(state, tasks):
    return _update(state, tasks, meta_grad_fn, outer_optimizer,
                   nonfinite_policy == "stop")

  options = backend.compiler_options()
  if task_sampler is None:
    return (jax.jit(update, donate_argnums=0, compiler_options=options)
            if jit else update)

  def fused_steps(state, sampler):
    # Every fused step's tasks are drawn up front by one vmapped sampler call
    # (the same tasks, key for key, as drawing them inside each step, at a
    # fraction of the per-step dispatch cost); the scan then consumes them.
    steps = state.step + jnp.arange(steps_per_call, dtype=state.step.dtype)
    tasks = jax.vmap(lambda s: tasks_of_step(state.key, s, sampler))(steps)
    return jax.lax.scan(update, state, tasks)

  def own_tasks_step(state, sampler):
    return update(state, tasks_of_step(state.key, state.step, sampler))

  def prefetching_step(state, tasks, sampler):
    # This step's tasks come in; the next step's are drawn here, where they
    # depend on nothing this step computes, so XLA can run the sampler beside
    # the meta-gradient instead of before it.
    next_tasks = tasks_of_step(state.key, state.step + 1, sampler)
    state, metrics = update(state, tasks)
    return state, next_tasks, metrics

  if not jit:
    if steps_per_call > 1:
      return lambda state: fused_steps(state, task_sampler)
    return lambda state: own_tasks_step(state, task_sampler)
  # The sampler is an argument of the jitted function, not a closure: a
  # `jax.tree_util.Partial` holding a dataset's arrays then feeds them as
  # inputs instead of baking them into the program as constants.
  sampler = (task_sampler if isinstance(task_sampler, jax.tree_util.Partial)
             else jax.tree_util.Partial(task_sampler))
  if prefetch_tasks:
    compiled = jax.jit(prefetching_step, donate_argnums=(0, 1),
                       compiler_options=options)
    first = jax.jit(tasks_of_step, compiler_options=options)

    def step_with_tasks(state, tasks):
      return compiled(state, tasks, sampler)

    step_with_tasks.lower = lambda state, tasks: compiled.lower(
        state, tasks, sampler)
    step_with_tasks.jitted = compiled
    step_with_tasks.cache_size = compiled._cache_size  # pylint: disable=protected-access
    return PrefetchingStep(
        step=step_with_tasks,
        first_tasks=lambda state: first(state.key, state.step, sampler))
  compiled = jax.jit(fused_steps if steps_per_call > 1 else own_tasks_step,
                     donate_argnums=0, compiler_options=options)

  def step(state):
    return compiled(state, sampler)

  step.lower = lambda state: compiled.lower(state, sampler)
  step.jitted = compiled
  step.cache_size = compiled._cache_size  # pylint: disable=protected-access
  return step
