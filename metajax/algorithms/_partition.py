"""Adapt only part of the parameters (ANIL, BOIL): head/body partitions.

A partition is `partition_fn(path, leaf) -> bool` over the params pytree
(True: the leaf adapts in the inner loop). The head is a top-level submodule
of the Flax params: `algorithm.head`, or by default the last top-level
submodule the model applies (found by an abstract forward pass on one task's
inputs), else the last one created.

Training splits the params into an adapted and a frozen part and runs the
inner loop on the adapted part only (no inner gradients for frozen leaves);
the meta-gradient still reaches the frozen leaves through the inner and
query losses. Test-time adaptation zeroes the frozen leaves' updates with
`optax.multi_transform`, so the frozen weights stay bit-identical.
"""
import dataclasses
from collections.abc import Mapping

import flax.linen as nn
import jax
import optax

from metajax.algorithms.base import explicit_inner_optimizer, inner_loop
from metajax.algorithms.maml import maml_meta_grad
from metajax.core.objective import InnerLoop, maml_task_loss
from metajax.settings import ConfigError, Section, setting


@dataclasses.dataclass(frozen=True)
class HeadConfig(Section):
  """The `algorithm` section of algorithms that split off a head."""
  head: str = setting("", "the head's top-level submodule ('': the last "
                      "one the model applies)")


def _modules(params):
  """The top-level submodule dict: `params["params"]` for Flax variables."""
  if isinstance(params, Mapping) and "params" in params:
    return params["params"]
  return params


def _top_name(path):
  keys = [getattr(k, "key", None) for k in path]
  if len(keys) > 1 and keys[0] == "params":
    return keys[1]
  return keys[0] if keys else None


def _applied_order(model, params, x):
  """Top-level submodule names in the order the model applies them."""
  order = []

  def record(next_fun, args, kwargs, context):
    path = getattr(context.module, "path", ())
    if len(path) == 1 and path[0] not in order:
      order.append(path[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(model.apply, params, x)
  return order


def find_head(config, problem) -> str:
  """The head's name; ConfigError naming 'algorithm.head' if it does not
  exist."""
  params = jax.eval_shape(problem.init_params, jax.random.key(0))
  modules = _modules(params)
  if not isinstance(modules, Mapping) or not modules:
    raise ConfigError("config field 'algorithm.head': the params are not a "
                      "dict of submodules, so there is no head to find")
  names = list(modules)
  head = config.algorithm.head
  if head:
    if head not in names:
      raise ConfigError(f"config field 'algorithm.head': {head!r} is not a "
                        f"top-level submodule; expected one of {names}")
    return head
  try:  # the last submodule applied, on one task's support inputs
    inputs = jax.eval_shape(problem.train_sampler,
                            jax.random.key(0)).support[0]
    x = jax.ShapeDtypeStruct(inputs.shape[1:], inputs.dtype)
    applied = [n for n in _applied_order(problem.model, params, x)
               if n in modules]
    if applied:
      return applied[-1]
  except (AttributeError, IndexError, TypeError, ValueError):
    pass  # fall back to creation order (dicts from `model.init` keep it)
  return names[-1]


def head_partition(head: str, adapt_head: bool):
  """`partition_fn` adapting the head (ANIL) or everything else (BOIL)."""
  return lambda path, leaf: (_top_name(path) == head) == adapt_head


def mask_of(params, partition_fn):
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: bool(partition_fn(path, leaf)), params)


def split(params, mask):
  """`(adapted, frozen)`: two trees with None where the other part lives."""
  adapted = jax.tree.map(lambda p, m: p if m else None, params, mask)
  frozen = jax.tree.map(lambda p, m: None if m else p, params, mask)
  return adapted, frozen


def merge(adapted, frozen):
  return jax.tree.map(lambda a, f: f if a is None else a, adapted, frozen,
                      is_leaf=lambda x: x is None)


def check_partition(config, problem, partition_fn, name: str):
  """ConfigError unless the partition adapts some but not all leaves."""
  params = jax.eval_shape(problem.init_params, jax.random.key(0))
  flags = jax.tree.leaves(mask_of(params, partition_fn))
  if not any(flags) or all(flags):
    head = config.algorithm.head or "the last top-level submodule"
    raise ConfigError(
        f"config field 'algorithm.head' ({head}): {name}'s partition adapts "
        f"{sum(flags)} of {len(flags)} parameter arrays; it must adapt some "
        "but not all (is the head the whole model, or is there no body?)")


def _restricted(inner: InnerLoop, frozen) -> InnerLoop:
  """`inner` acting on the adapted part, with `frozen` merged back in."""
  full = lambda fn: (lambda adapted, batch: fn(merge(adapted, frozen), batch))
  metric_fn = inner.metric_fn and full(inner.metric_fn)
  both_fn = inner.loss_and_metrics_fn and full(inner.loss_and_metrics_fn)
  return dataclasses.replace(inner, loss_fn=full(inner.loss_fn),
                             metric_fn=metric_fn, loss_and_metrics_fn=both_fn)


def partial_task_loss(partition_fn):
  """A `task_loss` that adapts only the leaves `partition_fn` selects."""
  def task_loss(params, task, inner):
    adapted, frozen = split(params, mask_of(params, partition_fn))
    return maml_task_loss(adapted, task, _restricted(inner, frozen))
  return task_loss


def partial_meta_grad(config, problem, partition_fn, name: str):
  check_partition(config, problem, partition_fn, name)
  return maml_meta_grad(inner_loop(config, problem),
                        task_loss=partial_task_loss(partition_fn))


def partial_eval_adaptation(config, problem, meta_params, partition_fn):
  """The configured inner optimizer (`inner.optimizer` at `inner.lr`) on the
  adapted leaves, as in meta-training; zero for the rest."""
  labels = lambda params: jax.tree.map(
      lambda m: "adapt" if m else "freeze", mask_of(params, partition_fn))
  optimizer = optax.multi_transform(
      {"adapt": explicit_inner_optimizer(config),
       "freeze": optax.set_to_zero()}, labels)
  return meta_params, inner_loop(config, problem, optimizer=optimizer)
