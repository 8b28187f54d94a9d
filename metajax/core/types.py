"""Shared containers: a batch of tasks and the meta-training state."""
from typing import Any, NamedTuple

import jax

PyTree = Any


class TaskBatch(NamedTuple):
  """Support and query splits of one task, or of many with a leading task axis.

  `support` and `query` are whatever the loss function takes as its `batch`
  argument, usually an `(inputs, targets)` tuple. In a meta-batch every leaf
  has a leading task axis of the same size.
  """
  support: PyTree
  query: PyTree


class MetaState(NamedTuple):
  """Everything a meta-step reads and writes, as one pytree.

  Attributes:
    params: meta-parameters (initialisation, and any learned inner
      hyper-parameters such as Meta-SGD rates).
    opt_state: state of the outer optax optimizer.
    step: number of meta-steps taken so far (int32 scalar).
    key: root PRNG key of the run; per-step keys are `fold_in(key, step)`.
    nonfinite_count: meta-steps whose loss or gradient was not finite (their
      updates were not applied).
    first_nonfinite_step: the first such step, or -1.
  """
  params: PyTree
  opt_state: PyTree
  step: jax.Array
  key: jax.Array
  nonfinite_count: jax.Array
  first_nonfinite_step: jax.Array
