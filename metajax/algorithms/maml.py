"""MAML (Finn et al., 2017): differentiate the query loss through adaptation.

Second order by default; `inner.first_order=true` drops the second-order
terms (that is FOMAML, also `--algorithm=fomaml`).
"""
from typing import Callable

import jax
import jax.numpy as jnp

from metajax.algorithms.base import Algorithm, inner_loop, no_settings
from metajax.core.meta_step import MetaGradFn
from metajax.core.objective import InnerLoop, maml_task_loss, meta_objective


def maml_meta_grad(inner: InnerLoop, task_loss: Callable = maml_task_loss
                   ) -> MetaGradFn:
  """Meta-gradient of the MAML objective (second or first order per `inner`).

  Args:
    inner: how each task is adapted.
    task_loss: per-task `fn(params, task, inner) -> (loss, metrics)`; the
      default adapts every parameter and scores the query.

  Returns:
    `meta_grad_fn(params, tasks, key, step) -> (grads, metrics)`, with the
    per-task metrics averaged and `meta_loss` added.
  """

  def meta_grad_fn(params, tasks, key, step):
    del key, step  # MAML's objective is deterministic given the tasks.
    objective = lambda p: meta_objective(p, tasks, inner, task_loss)
    (loss, metrics_T), grads = jax.value_and_grad(objective, has_aux=True)(
        params)
    metrics = jax.tree.map(jnp.mean, metrics_T)
    metrics["meta_loss"] = loss
    return grads, metrics

  return meta_grad_fn


MamlConfig = no_settings("maml")

ALGORITHM = Algorithm(
    name="maml", family="optimization", config_class=MamlConfig,
    make_meta_grad=lambda config, problem: maml_meta_grad(
        inner_loop(config, problem)))
