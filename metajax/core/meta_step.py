"""The meta-step factory: one jitted `(state, batch_or_nothing) -> (state, metrics)`.

An algorithm supplies a meta-gradient function
`meta_grad_fn(params, tasks, key) -> (grads, metrics)` (given also
`step=state.step` when it has the attribute `needs_step = True`); the
factory wraps it with the outer optax update, the step counter, the per-step
key, a finite guard and, optionally, in-jit task sampling and several fused
meta-steps.
"""
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from metajax import backend as xla_options
from metajax.core.losses import tree_is_finite
from metajax.core.objective import InnerLoop, maml_task_loss, meta_objective
from metajax.core.types import MetaState, TaskBatch

PyTree = Any
MetaGradFn = Callable[[PyTree, TaskBatch, jax.Array], tuple]
TaskSampler = Callable[[jax.Array], TaskBatch]


def init_meta_state(params, outer_optimizer: optax.GradientTransformation,
                    key: jax.Array) -> MetaState:
  """The initial `MetaState` for `params` under `outer_optimizer`."""
  return MetaState(params=params, opt_state=outer_optimizer.init(params),
                   step=jnp.zeros((), jnp.int32), key=key,
                   nonfinite_count=jnp.zeros((), jnp.int32),
                   first_nonfinite_step=jnp.full((), -1, jnp.int32))


def maml_meta_grad(inner: InnerLoop, task_loss: Callable = maml_task_loss
                   ) -> MetaGradFn:
  """Meta-gradient of the MAML objective (second or first order per `inner`)."""

  def meta_grad_fn(params, tasks, key):
    del key  # MAML's objective is deterministic given the tasks.
    objective = lambda p: meta_objective(p, tasks, inner, task_loss)
    (loss, metrics_T), grads = jax.value_and_grad(objective, has_aux=True)(
        params)
    metrics = jax.tree.map(jnp.mean, metrics_T)
    metrics["meta_loss"] = loss
    return grads, metrics

  return meta_grad_fn


def _update(state: MetaState, tasks: TaskBatch, meta_grad_fn: MetaGradFn,
            outer_optimizer: optax.GradientTransformation,
            stop_on_nonfinite: bool):
  step_key = jax.random.fold_in(state.key, state.step)
  # An algorithm whose meta-gradient depends on the step (MAML++'s annealing)
  # sets `meta_grad_fn.needs_step = True` and takes it as a keyword.
  step_kwargs = ({"step": state.step}
                 if getattr(meta_grad_fn, "needs_step", False) else {})
  grads, metrics = meta_grad_fn(state.params, tasks,
                                jax.random.fold_in(step_key, 1), **step_kwargs)
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


def make_meta_step(
    meta_grad_fn: MetaGradFn,
    outer_optimizer: optax.GradientTransformation,
    task_sampler: Optional[TaskSampler] = None,
    steps_per_call: int = 1,
    nonfinite_policy: str = "stop",
    jit: bool = True,
    prefetch_tasks: Optional[bool] = None,
):
  """Builds the meta-step once.

  Args:
    meta_grad_fn: `fn(params, tasks, key) -> (grads, metrics)`, e.g. from
      `maml_meta_grad`.
    outer_optimizer: optax optimizer of the meta-parameters.
    task_sampler: optional `fn(key) -> TaskBatch` run inside the step with
      the key `fold_in(fold_in(state.key, state.step), 0)`. With a sampler the
      step is `step(state)`; without, `step(state, tasks)`. A jitted
      unfused step (on CPU: `prefetch_tasks`) draws the NEXT step's tasks
      inside each call, beside the meta-gradient instead of before it, and
      keeps them for the state it returned: called with that state it uses
      them, with any other state it draws its tasks first. The tasks of a
      step depend only on `(state.key, state.step)`, so the results are the
      same either way.
    steps_per_call: fuse this many meta-steps into one compiled call with a
      `lax.scan` (needs `task_sampler`, which then draws all the fused
      steps' tasks at once, vmapped over their keys); metrics then have a
      leading axis.
    nonfinite_policy: "stop" freezes the state at the first non-finite
      loss or gradient (the trainer then stops and names the step); "skip"
      drops only the bad updates. Either way they are counted in the state.
    jit: return the `jax.jit`-compiled step with the state donated (it also
      has `.lower(state)` for cost analysis and `.cache_size()`).
    prefetch_tasks: with a sampler, jitted and unfused: draw the next step's
      tasks inside each call (above). False draws each step's own tasks
      first, inside the same call; the results are the same. None (default):
      on the CPU backend only (sine 1-step per call 0.305 -> 0.216 ms on 2
      cores; an H200 ran it ~10 % slower, 0.16-0.18 against 0.15 ms).

  Returns:
    The meta-step function.
  """
  if not isinstance(steps_per_call, int) or steps_per_call < 1:
    raise ValueError(f"steps_per_call must be an int >= 1, got {steps_per_call!r}")
  if nonfinite_policy not in ("stop", "skip"):
    raise ValueError("nonfinite_policy must be 'stop' or 'skip', got "
                     f"{nonfinite_policy!r}")
  if steps_per_call > 1 and task_sampler is None:
    raise ValueError("steps_per_call > 1 needs a task_sampler (tasks are "
                     "sampled inside the fused steps)")

  def update(state, tasks):
    return _update(state, tasks, meta_grad_fn, outer_optimizer,
                   nonfinite_policy == "stop")

  if task_sampler is None:
    return (jax.jit(update, donate_argnums=0,
                    compiler_options=xla_options.compiler_options())
            if jit else update)

  def tasks_of_step(key, step, sampler):
    return sampler(jax.random.fold_in(jax.random.fold_in(key, step), 0))

  def fused_steps(state, sampler):
    # Every fused step's tasks are drawn up front by one vmapped sampler call
    # (the same tasks, key for key, as drawing them inside each step, at a
    # fraction of the per-step dispatch cost); the scan then consumes them.
    steps = state.step + jnp.arange(steps_per_call, dtype=state.step.dtype)
    tasks = jax.vmap(lambda s: tasks_of_step(state.key, s, sampler))(steps)
    return jax.lax.scan(update, state, tasks)

  def prefetching_step(state, tasks, sampler):
    # This step's tasks come in; the next step's are drawn here, where they
    # depend on nothing this step computes, so XLA runs the sampler beside
    # the meta-gradient instead of before it.
    next_tasks = tasks_of_step(state.key, state.step + 1, sampler)
    state, metrics = update(state, tasks)
    return state, next_tasks, metrics

  if not jit:
    if steps_per_call > 1:
      return lambda state: fused_steps(state, task_sampler)
    return lambda state: update(
        state, tasks_of_step(state.key, state.step, task_sampler))
  # The sampler is an argument of the jitted function, not a closure: a
  # `jax.tree_util.Partial` holding a dataset's arrays then feeds them as
  # inputs instead of baking them into the program as constants.
  sampler = (task_sampler if isinstance(task_sampler, jax.tree_util.Partial)
             else jax.tree_util.Partial(task_sampler))
  options = xla_options.compiler_options()
  if prefetch_tasks is None:
    prefetch_tasks = jax.default_backend() == "cpu"
  if steps_per_call > 1 or not prefetch_tasks:
    compiled = jax.jit(
        fused_steps if steps_per_call > 1 else
        lambda state, sampler: update(
            state, tasks_of_step(state.key, state.step, sampler)),
        donate_argnums=0, compiler_options=options)

    def step(state):
      return compiled(state, sampler)

    step.lower = lambda state: compiled.lower(state, sampler)
  else:
    compiled = jax.jit(prefetching_step, donate_argnums=(0, 1),
                       compiler_options=options)
    first_tasks = jax.jit(tasks_of_step, compiler_options=options)
    # The tasks drawn for the state this step last returned. Tasks are a
    # function of (key, step) alone, so a call with that very state object
    # (immutable) may use them; any other state gets its tasks drawn first.
    prefetched = {"state": None, "tasks": None}

    def step(state):
      if state is prefetched["state"]:
        tasks = prefetched["tasks"]
      else:
        tasks = first_tasks(state.key, state.step, sampler)
      prefetched.update(state=None, tasks=None)  # both are donated below
      state, next_tasks, metrics = compiled(state, tasks, sampler)
      prefetched.update(state=state, tasks=next_tasks)
      return state, metrics

    step.lower = lambda state: compiled.lower(
        state, first_tasks(state.key, state.step, sampler), sampler)
    step.prefetched = prefetched

  step.jitted = compiled
  step.cache_size = compiled._cache_size  # pylint: disable=protected-access
  return step
