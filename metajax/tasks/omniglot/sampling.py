"""N-way K-shot Omniglot tasks, sampled inside jit from a PRNG key.

A class is a (character, rotation) pair, `class = 4 * character + rotation`
with rotation k meaning `np.rot90(image, k)` (k * 90 degrees
counter-clockwise), so a split of C characters has 4 * C classes. One image
per (character, drawer) is stored; rotations are applied when sampling.

Per task: `ways` distinct classes (top-k of uniform noise, so in random order:
the i-th chosen class gets label i), then for each class `shots + queries`
distinct drawers, the first `shots` for support and the rest for query. Both
sets are class-major: support is `[class 0 x shots, class 1 x shots, ...]`,
labels `[0]*shots + [1]*shots + ...`, and likewise for query.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.core.types import TaskBatch

NUM_ROTATIONS = 4


class OmniglotTasks(NamedTuple):
  """The images of one split, as a pytree of device arrays.

  Attributes:
    images_CxDxHxW: uint8, ink 255 and background 0; C characters, D drawers.
    character_ids_C: int32 global character index of each row.
  """
  images_CxDxHxW: jax.Array
  character_ids_C: jax.Array

  @property
  def num_characters(self):
    return self.images_CxDxHxW.shape[0]

  @property
  def num_classes(self):
    return NUM_ROTATIONS * self.images_CxDxHxW.shape[0]


def check_task_shape(dataset, num_tasks, ways, shots, queries):
  """Raises ValueError naming the field if the tasks cannot be sampled."""
  for name, value in (("num_tasks", num_tasks), ("ways", ways),
                      ("shots", shots), ("queries", queries)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or (
        value < 1):
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  _, num_drawers, height, width = dataset.images_CxDxHxW.shape
  if height != width:
    raise ValueError(f"images must be square to rotate, got {height}x{width}")
  if shots + queries > num_drawers:
    raise ValueError(
        f"shots + queries = {shots} + {queries} = {shots + queries} exceeds "
        f"the {num_drawers} drawers per character (each example of a class "
        "is a different drawer)")
  if ways > dataset.num_classes:
    raise ValueError(
        f"ways = {ways} exceeds the {dataset.num_classes} classes of this "
        f"split ({dataset.num_characters} characters x {NUM_ROTATIONS} "
        "rotations)")


def _choose_distinct(key, population, count):
  """`count` distinct ints in [0, population), in random order."""
  return jax.lax.top_k(jax.random.uniform(key, (population,)), count)[1]


def _sample_task(images_CxDxHxW, key, ways, shots, queries):
  """One task, unbatched: ((x_NKxHxWx1, y_NK), (x_NQxHxWx1, y_NQ))."""
  num_characters, num_drawers, size, _ = images_CxDxHxW.shape
  per_class = shots + queries
  class_key, drawer_key = jax.random.split(key)
  classes_W = _choose_distinct(class_key, NUM_ROTATIONS * num_characters, ways)
  characters_W, rotations_W = jnp.divmod(classes_W, NUM_ROTATIONS)
  drawers_WxM = jax.vmap(_choose_distinct, in_axes=(0, None, None))(
      jax.random.split(drawer_key, ways), num_drawers, per_class)
  images_WxMxP = images_CxDxHxW[characters_W[:, None], drawers_WxM].reshape(
      ways, per_class, size * size)
  # pixel_index_4xP[k] lists, for each output pixel of rot90(image, k), the
  # flat input pixel it comes from.
  pixel_index_4xP = jnp.asarray(np.stack([
      np.rot90(np.arange(size * size).reshape(size, size), k).ravel()
      for k in range(NUM_ROTATIONS)]), jnp.int32)
  rotated_WxMxP = jnp.take_along_axis(
      images_WxMxP, pixel_index_4xP[rotations_W][:, None, :], axis=2)
  x_WxMxHxWx1 = (rotated_WxMxP.astype(jnp.float32) / 255.0).reshape(
      ways, per_class, size, size, 1)
  labels_WxM = jnp.broadcast_to(
      jnp.arange(ways, dtype=jnp.int32)[:, None], (ways, per_class))

  def flat(array):
    return array.reshape((-1,) + array.shape[2:])

  support = (flat(x_WxMxHxWx1[:, :shots]), flat(labels_WxM[:, :shots]))
  query = (flat(x_WxMxHxWx1[:, shots:]), flat(labels_WxM[:, shots:]))
  return TaskBatch(support=support, query=query)


def sample_tasks(dataset, key, num_tasks, ways, shots, queries):
  """Samples a meta-batch of tasks; pure in `key`, so it runs inside jit.

  Args:
    dataset: an `OmniglotTasks` split.
    key: a PRNG key.
    num_tasks, ways, shots, queries: positive Python ints with
      `shots + queries <= D` (20) and `ways <= 4 * C`.

  Returns:
    `TaskBatch(support=(x_TxNKx28x28x1 float32 in [0, 1], y_TxNK int32),
    query=(x_TxNQx28x28x1, y_TxNQ))`, NK = ways * shots, NQ = ways * queries.
  """
  check_task_shape(dataset, num_tasks, ways, shots, queries)
  return _sample_batch(dataset.images_CxDxHxW, key, num_tasks, ways, shots,
                       queries)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _sample_batch(images_CxDxHxW, key, num_tasks, ways, shots, queries):
  # Jitted so that eager calls are fast too; inside an outer jit it is inlined.
  sample_one = functools.partial(_sample_task, images_CxDxHxW, ways=ways,
                                 shots=shots, queries=queries)
  return jax.vmap(sample_one)(jax.random.split(key, num_tasks))


def make_task_sampler(dataset, ways, shots, queries, num_tasks):
  """Validates the task shape now and returns `sampler(key) -> TaskBatch`.

  The sampler is a `jax.tree_util.Partial` whose pytree leaves are the split's
  arrays. Passing it as an argument of a jitted function keeps the images an
  input buffer; closing over it also works but bakes them into the compiled
  program as a constant (megabytes, slower compiles).

  Args:
    dataset: an `OmniglotTasks` split.
    ways, shots, queries, num_tasks: see `sample_tasks`.

  Returns:
    A callable `sampler(key) -> TaskBatch`.
  """
  check_task_shape(dataset, num_tasks, ways, shots, queries)
  return jax.tree_util.Partial(
      functools.partial(sample_tasks, num_tasks=num_tasks, ways=ways,
                        shots=shots, queries=queries), dataset)
