"""N-way K-shot text tasks, sampled inside jit from pre-tokenised arrays.

A split is a class-major array of padded token ids, `ids_CxMxL` (C classes,
M examples each, L tokens; 0 is padding, so the mask is `ids != 0`). Per
task: `ways` distinct classes in random order (the i-th chosen gets label
i, so labels are permuted afresh every episode), then `shots + queries`
distinct examples of each, the first `shots` for support. Both sets are
class-major, as in `metajax.tasks.omniglot.sampling`.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import TaskBatch


class TextTasks(NamedTuple):
  """One split's examples as device arrays.

  Attributes:
    ids_CxMxL: int32 padded token ids, class-major.
    class_ids_C: int32 corpus-wide class of each row.
  """
  ids_CxMxL: jax.Array
  class_ids_C: jax.Array

  @property
  def num_classes(self):
    return self.ids_CxMxL.shape[0]


def check_task_shape(split, num_tasks, ways, shots, queries, name="split"):
  """Raises ValueError naming the field if the tasks cannot be sampled."""
  for field, value in (("num_tasks", num_tasks), ("ways", ways),
                       ("shots", shots), ("queries", queries)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or (
        value < 1):
      raise ValueError(f"{field} must be a positive int, got {value!r}")
  num_classes, per_class, _ = split.ids_CxMxL.shape
  if ways > num_classes:
    raise ValueError(f"ways = {ways} exceeds the {num_classes} classes of "
                     f"the {name}")
  if shots + queries > per_class:
    raise ValueError(f"shots + queries = {shots} + {queries} exceeds the "
                     f"{per_class} examples per class of the {name}")


def _choose_distinct(key, population, count):
  """`count` distinct ints in [0, population), in random order."""
  return jax.lax.top_k(jax.random.uniform(key, (population,)), count)[1]


def _sample_task(ids_CxMxL, key, ways, shots, queries):
  """One task, unbatched: ((ids_NKxL, y_NK), (ids_NQxL, y_NQ))."""
  num_classes, per_class, length = ids_CxMxL.shape
  class_key, example_key = jax.random.split(key)
  classes_W = _choose_distinct(class_key, num_classes, ways)
  examples_WxP = jax.vmap(_choose_distinct, in_axes=(0, None, None))(
      jax.random.split(example_key, ways), per_class, shots + queries)
  ids_WxPxL = ids_CxMxL[classes_W[:, None], examples_WxP]
  labels_WxP = jnp.broadcast_to(jnp.arange(ways, dtype=jnp.int32)[:, None],
                                examples_WxP.shape)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  return TaskBatch(
      support=(flat(ids_WxPxL[:, :shots]), flat(labels_WxP[:, :shots])),
      query=(flat(ids_WxPxL[:, shots:]), flat(labels_WxP[:, shots:])))


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _sample_batch(ids_CxMxL, key, num_tasks, ways, shots, queries):
  # Jitted so that eager calls are fast too; inside an outer jit it is inlined.
  one = functools.partial(_sample_task, ids_CxMxL, ways=ways, shots=shots,
                          queries=queries)
  return jax.vmap(one)(jax.random.split(key, num_tasks))


def sample_tasks(split, key, num_tasks, ways, shots, queries):
  """A meta-batch of tasks; pure in `key`, so it runs inside jit.

  Returns:
    `TaskBatch(support=(ids_TxNKxL int32, y_TxNK int32), query=(ids_TxNQxL,
    y_TxNQ))`, NK = ways * shots, NQ = ways * queries.
  """
  check_task_shape(split, num_tasks, ways, shots, queries)
  return _sample_batch(split.ids_CxMxL, key, num_tasks, ways, shots, queries)


def make_task_sampler(split, ways, shots, queries, num_tasks):
  """Validates the shape now; `sampler(key) -> TaskBatch` whose pytree
  leaves are the split's arrays (an input buffer of the jitted step, not a
  constant baked into it)."""
  check_task_shape(split, num_tasks, ways, shots, queries)
  return jax.tree_util.Partial(
      functools.partial(sample_tasks, num_tasks=num_tasks, ways=ways,
                        shots=shots, queries=queries), split)
