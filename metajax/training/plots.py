"""Plots of a run: the learning curve and, for sine, the paper's figure."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np


def plot_learning_curve(records: list, path: str, title: str = ""):
  """Meta-loss (post-adaptation) and pre-adaptation loss against step."""
  steps = [r["step"] for r in records]
  fig, ax = plt.subplots(figsize=(6, 4))
  positive = True
  for name in ("meta_loss", "pre_loss", "post_accuracy"):
    if not records or name not in records[0]:
      continue
    values = np.array([float(r.get(name, "nan")) for r in records])  # "nan" too
    ax.plot(steps, values, label=name)
    positive &= bool(np.all(values[np.isfinite(values)] > 0))
  ax.set_xlabel("meta-step")
  ax.set_yscale("log" if positive else "linear")
  ax.set_title(title)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_regression_adaptation(params, problem, inner, path: str, seed: int,
                               shots: int = 5, steps=(0, 1, 10),
                               num_tasks: int = 3):
  """True curves, K support points and predictions after `steps` steps."""
  from metajax.tasks.regression_sampling import sample_regression_tasks  # pylint: disable=g-import-not-at-top
  key = jax.random.fold_in(jax.random.key(seed), 7)
  tasks, task_params = sample_regression_tasks(problem.family, key, num_tasks,
                                               shots, 1)
  low, high = problem.family.x_range
  grid_Gx1 = jnp.linspace(low, high, 200)[:, None]
  fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 3.2))
  for t, ax in enumerate(np.atleast_1d(axes)):
    support = jax.tree.map(lambda leaf: leaf[t], tasks.support)
    one = jax.tree.map(lambda v: v[t], task_params)
    ax.plot(grid_Gx1[:, 0], problem.family.function(one, grid_Gx1)[:, 0],
            "k-", label="ground truth")
    ax.plot(support[0][:, 0], support[1][:, 0], "r^", label=f"{shots} points")
    for n in steps:
      adapted = inner.run(params, support, num_steps=n).params
      ax.plot(grid_Gx1[:, 0], problem.model.apply(adapted, grid_Gx1)[:, 0],
              "--", label=f"after {n} steps")
    ax.set_title(f"task {t}")
  np.atleast_1d(axes)[0].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
