"""Meta-test evaluation: adapt on fresh tasks, score the query set per step.

The protocol of the MAML paper's Table 2 and Omniglot tables: a fixed set of
tasks from a fixed seed, fine-tune from the meta-learned initialisation with
the inner optimizer, report the mean over tasks with a 95% interval.

A fine-tuning that diverges (its support loss non-finite, or grown past
`DIVERGENCE_FACTOR` times its value before adaptation) is counted at every
step from the first where it does so (`num_diverged`); its query losses stay
in the mean, which then shows the divergence, and the median is reported
beside it, so a diverged task is never averaged away unseen.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from metajax import backend
from metajax.core.objective import InnerLoop, query_metrics
from metajax.core.types import TaskBatch

SUPPORT_LOSS = "support_loss"
DIVERGENCE_FACTOR = 10.0


def adaptation_curves(params, inner: InnerLoop, tasks: TaskBatch,
                      max_steps: int, chunk_size: int = 100) -> dict:
  """Query metrics of every task after 0..max_steps inner steps.

  Tasks are processed `chunk_size` at a time (`lax.map` over chunks of a
  `vmap`), so memory stays bounded for many tasks.

  Returns:
    `{"loss": array (num_tasks, max_steps + 1), <metric>: ...,
    "support_loss": ...}` as numpy; `support_loss` is the adapted loss on
    the task's own support set, from which divergence is judged.
  """
  def one_task(task):
    per_step = lambda p: query_metrics(inner, p, task.query, "")
    result = inner.run(params, task.support, num_steps=max_steps,
                       first_order=True, per_step_fn=per_step)
    curves = jax.tree.map(lambda s, rest: jnp.concatenate([s[None], rest]),
                          per_step(params), result.per_step)
    # The inner loop's support loss before each step, then after the last.
    final = inner.loss_fn(result.params, task.support)
    curves[SUPPORT_LOSS] = jnp.concatenate([result.losses, final[None]])
    return curves

  num_tasks = jax.tree.leaves(tasks)[0].shape[0]
  chunk = min(chunk_size, num_tasks)
  num_chunks = math.ceil(num_tasks / chunk)
  pad = num_chunks * chunk - num_tasks

  def reshape(leaf):
    leaf = jnp.concatenate([leaf, leaf[:pad]]) if pad else leaf
    return leaf.reshape((num_chunks, chunk) + leaf.shape[1:])

  chunked = jax.tree.map(reshape, tasks)
  curves = jax.jit(lambda t: jax.lax.map(jax.vmap(one_task), t),
                   compiler_options=backend.compiler_options())(chunked)
  return jax.tree.map(
      lambda c: np.asarray(c).reshape((-1,) + c.shape[2:])[:num_tasks], curves)


def mean_and_interval(values) -> dict:
  """Mean, the half-width of its 95% normal interval, median, and how many
  values were not finite (a diverged fine-tuning makes the mean NaN/inf,
  reported as such rather than hidden)."""
  values = np.asarray(values, dtype=np.float64)
  with np.errstate(invalid="ignore"):  # inf - inf in std: NaN, reported
    half = (1.96 * values.std(ddof=1) / math.sqrt(len(values))
            if len(values) > 1 else float("nan"))
  return {"mean": float(values.mean()), "ci95": float(half),
          # A diverged (NaN) task counts as +inf: the median stays defined.
          "median": float(np.median(np.where(np.isnan(values), np.inf, values))),
          "num_nonfinite": int(np.sum(~np.isfinite(values)))}


def diverged_tasks(support_loss, factor: float = DIVERGENCE_FACTOR):
  """`(tasks, steps + 1)` bools: whether each task's fine-tuning has diverged
  by each step, i.e. its support loss was non-finite or above `factor`
  times its value before adaptation at that step or an earlier one.
  (Losses under `factor * 1e-3` never count: a near-perfect start is not a
  divergence.)"""
  support_loss = np.asarray(support_loss, np.float64)
  start = np.maximum(support_loss[:, :1], 1e-3)
  with np.errstate(invalid="ignore"):
    bad = ~np.isfinite(support_loss) | (support_loss > factor * start)
  return np.logical_or.accumulate(bad, axis=1)


def summarize_curves(curves: dict, steps) -> dict:
  """`{metric: {"step_N": {"mean", "ci95", "median", "num_nonfinite"}}}` at
  the requested step counts, with `num_diverged` (`diverged_tasks`) when the
  curves hold the support loss (which is not itself reported)."""
  diverged = (diverged_tasks(curves[SUPPORT_LOSS]) if SUPPORT_LOSS in curves
              else None)
  def stats(curve, n):
    summary = mean_and_interval(curve[:, n])
    if diverged is not None:
      summary["num_diverged"] = int(diverged[:, n].sum())
    return summary
  return {name: {f"step_{n}": stats(curve, n) for n in steps}
          for name, curve in curves.items() if name != SUPPORT_LOSS}
