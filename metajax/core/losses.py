"""Per-task supervised losses built from a model's `apply` function.

Each returned `loss_fn(params, batch) -> scalar` takes one task's batch
`(inputs, targets)` without a task axis, the form `adapt` and the
meta-objective expect.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import optax


def mse_loss(apply_fn: Callable) -> Callable:
  """Mean squared error of `apply_fn(params, x)` against `y`."""

  def loss_fn(params, batch):
    x, y = batch
    return jnp.mean(jnp.square(apply_fn(params, x) - y))

  return loss_fn


def _cross_entropy(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                  labels))


def _accuracy(logits, labels):
  predictions = jnp.argmax(logits, axis=-1)
  return jnp.mean((predictions == labels).astype(jnp.float32))


def logits_cross_entropy_and_accuracy(logits, labels):
  """Mean softmax cross-entropy and accuracy of `logits` for integer
  `labels` (for learners that produce query logits themselves)."""
  return _cross_entropy(logits, labels), _accuracy(logits, labels)


def cross_entropy_loss(apply_fn: Callable) -> Callable:
  """Softmax cross-entropy of logits `apply_fn(params, x)` against int labels."""

  def loss_fn(params, batch):
    x, labels = batch
    return _cross_entropy(apply_fn(params, x), labels)

  return loss_fn


def accuracy_metric(apply_fn: Callable) -> Callable:
  """`metric_fn(params, batch) -> {"accuracy": ...}` for classification."""

  def metric_fn(params, batch):
    x, labels = batch
    return {"accuracy": _accuracy(apply_fn(params, x), labels)}

  return metric_fn


def cross_entropy_and_accuracy(apply_fn: Callable) -> Callable:
  """`fn(params, batch) -> (cross-entropy, {"accuracy": ...})`, one forward.

  The `loss_and_metrics_fn` of `InnerLoop`: the query loss and accuracy
  from the same logits. (Separate loss and metric functions run the model
  twice, and XLA does not always merge the two passes.)
  """

  def loss_and_metrics_fn(params, batch):
    x, labels = batch
    logits = apply_fn(params, x)
    return _cross_entropy(logits, labels), {"accuracy": _accuracy(logits,
                                                                  labels)}

  return loss_and_metrics_fn


def classification_fns(apply_fn: Callable) -> dict:
  """`loss_fn`, `metric_fn` and `loss_and_metrics_fn` for a classifier.

  Keyword arguments for `Problem` (or `InnerLoop`): cross-entropy, accuracy,
  and both from one forward pass.
  """
  return dict(loss_fn=cross_entropy_loss(apply_fn),
              metric_fn=accuracy_metric(apply_fn),
              loss_and_metrics_fn=cross_entropy_and_accuracy(apply_fn))


def tree_is_finite(tree) -> jax.Array:
  """True when every leaf of `tree` is finite (a scalar bool array)."""
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
