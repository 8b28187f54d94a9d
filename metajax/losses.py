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


def cross_entropy_loss(apply_fn: Callable) -> Callable:
  """Softmax cross-entropy of logits `apply_fn(params, x)` against int labels."""

  def loss_fn(params, batch):
    x, labels = batch
    logits = apply_fn(params, x)
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  return loss_fn


def accuracy_metric(apply_fn: Callable) -> Callable:
  """`metric_fn(params, batch) -> {"accuracy": ...}` for classification."""

  def metric_fn(params, batch):
    x, labels = batch
    predictions = jnp.argmax(apply_fn(params, x), axis=-1)
    return {"accuracy": jnp.mean((predictions == labels).astype(jnp.float32))}

  return metric_fn


def tree_is_finite(tree) -> jax.Array:
  """True when every leaf of `tree` is finite (a scalar bool array)."""
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
