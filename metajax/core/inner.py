"""Inner-loop adaptation: a `jax.lax.scan` of optimizer steps on one task.

`adapt` is the building block every gradient-based algorithm shares. It is
written for ONE task (unbatched arrays); `jax.vmap` it over a task axis.
"""
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


class AdaptResult(NamedTuple):
  """What `adapt` returns.

  Attributes:
    params: the adapted parameters after `num_steps` steps.
    losses: shape `(num_steps,)`, the support loss before each step.
    per_step: stacked outputs of `per_step_fn` after each step (or None).
  """
  params: PyTree
  losses: jax.Array
  per_step: Any = None


def differentiable_adam(learning_rate, **kwargs) -> optax.GradientTransformation:
  """`optax.adam` safe to differentiate through (for inner loops).

  Plain Adam's `sqrt(v)` has an infinite derivative where a gradient entry is
  exactly zero (a dead ReLU), which makes meta-gradients NaN; `eps_root`
  moves the epsilon inside the square root.
  """
  kwargs.setdefault("eps_root", 1e-12)
  return optax.adam(learning_rate, **kwargs)


def with_line_search(base: optax.GradientTransformation,
                     max_halvings: int = 30) -> optax.GradientTransformation:
  """`base`'s steps scaled back until the loss decreases (Armijo).

  Each step of `base` is scaled by s <= 1, halved from the last step's s
  (times 1.5, capped at 1) until the loss decreases by the Armijo condition,
  at most `max_halvings` times (optax's backtracking line search). With
  `adapt` the searched loss is the task's support loss, so a fine-tuning can
  never raise it: the remedy for a fixed rate above 2 / curvature, where
  plain gradient steps grow without bound. Costs one to a few extra forward
  passes per step; for test-time adaptation (nothing differentiates through
  the search).
  """
  return optax.chain(base, optax.scale_by_backtracking_linesearch(
      max_backtracking_steps=max_halvings, decrease_factor=0.5,
      max_learning_rate=1.0))


def check_inner_settings(num_steps, learning_rate=None):
  """Raises ValueError for a negative step count or a negative/NaN rate."""
  if not isinstance(num_steps, int) or isinstance(num_steps, bool):
    raise TypeError(f"num_steps must be a Python int, got {num_steps!r}")
  if num_steps < 0:
    raise ValueError(f"num_steps must be >= 0, got {num_steps}")
  if learning_rate is not None and isinstance(learning_rate, (int, float)):
    if not learning_rate >= 0:  # also catches NaN
      raise ValueError(f"inner learning_rate must be >= 0, got {learning_rate}")


def adapt(
    params: PyTree,
    loss_fn: LossFn,
    batch: PyTree,
    num_steps: int,
    *,
    learning_rate: float = 0.01,
    inner_optimizer: Optional[optax.GradientTransformation] = None,
    first_order: bool = False,
    remat: bool = False,
    per_step_fn: Optional[Callable[[PyTree], Any]] = None,
    unroll: int | bool = 1,
    first_step_outside_scan: bool = False,
    step_batches: bool = False,
) -> AdaptResult:
  """Adapts `params` to one task with `num_steps` gradient steps.

  Args:
    params: parameter pytree to start from (the meta-learned initialisation).
    loss_fn: `loss_fn(params, batch) -> scalar` for one task.
    batch: the task's support data, as `loss_fn` takes it.
    num_steps: number of inner steps (a Python int, >= 0; 0 returns `params`).
    learning_rate: rate of the default inner optimizer, plain SGD. Ignored
      when `inner_optimizer` is given. May be a traced scalar.
    inner_optimizer: any optax `GradientTransformation`; its state is carried
      through the scan. It may close over traced meta-parameters (learned
      rates), which then receive meta-gradients.
    first_order: stop gradients through the inner gradients (first-order MAML):
      the adapted parameters depend on `params` only through the identity path.
    remat: wrap each step in `jax.checkpoint`, trading compute for memory on
      long unrolls.
    per_step_fn: optional `fn(params) -> pytree` evaluated after every step
      (for example the query loss, for MAML++'s multi-step loss); results are
      stacked along a leading `num_steps` axis in `AdaptResult.per_step`.
    unroll: `jax.lax.scan`'s unroll factor (True: all steps). Unrolling a
      short loop of small steps removes the loop's per-iteration overhead
      (and its reverse loop's) at some compile time; results are the same.

    first_step_outside_scan: apply the scan's body once before the scan (the
      same results; see the comment in the body). Faster for second-order
      loops on XLA:CPU, slower on GPUs: `metajax.backend.for_backend`
      selects it, and `InnerLoop` applies it to second-order loops only.
    step_batches: `batch` holds one batch per step, stacked along a leading
      axis of size `num_steps` (mini-batch steps, as Reptile's), instead of
      one batch for every step.

  Returns:
    An `AdaptResult` with the adapted params and the per-step support losses.
  """
  check_inner_settings(num_steps, learning_rate)
  # Optimizers that read the loss (`with_line_search`) get it, and the
  # support loss as `value_fn`; the others ignore them.
  optimizer = optax.with_extra_args_support(
      inner_optimizer or optax.sgd(learning_rate))
  grad_fn = jax.value_and_grad(loss_fn)
  if step_batches:
    sizes = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(batch)}
    if sizes != {num_steps}:
      raise ValueError(f"step_batches: every leaf of batch needs a leading "
                       f"axis of num_steps={num_steps}, got sizes {sizes}")
  xs = batch if step_batches else None

  def step(carry, step_batch):
    current, opt_state = carry
    data = step_batch if step_batches else batch
    loss, grads = grad_fn(current, data)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    updates, opt_state = optimizer.update(
        grads, opt_state, current, value=loss, grad=grads,
        value_fn=lambda p: loss_fn(p, data))
    current = optax.apply_updates(current, updates)
    extra = per_step_fn(current) if per_step_fn is not None else None
    return (current, opt_state), (loss, extra)

  if remat:
    step = jax.checkpoint(step)
  carry = (params, optimizer.init(params))
  # Under `jax.vmap` over tasks the meta-parameters are shared by every task
  # until their first update; outside the scan they stay unbatched, so the
  # first step's support passes (and their transposes in the meta-gradient)
  # are one product over all tasks' examples rather than per-task products
  # on broadcast copies of the weights: a scan's carry is batched from the
  # start.
  if num_steps == 0 or not first_step_outside_scan:
    (adapted, _), (losses, per_step) = jax.lax.scan(
        step, carry, xs=xs, length=num_steps, unroll=unroll)
    return AdaptResult(adapted, losses, per_step)
  take = lambda index: (None if xs is None
                        else jax.tree.map(lambda leaf: leaf[index], xs))
  carry, first = step(carry, take(0))
  outputs = jax.tree.map(lambda a: a[None], first)
  if num_steps > 1:
    carry, rest = jax.lax.scan(
        step, carry, xs=take(slice(1, None)), length=num_steps - 1,
        unroll=unroll)
    outputs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), outputs,
                           rest)
  (adapted, _), (losses, per_step) = carry, outputs
  return AdaptResult(adapted, losses, per_step)
