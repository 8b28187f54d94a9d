"""The MAML paper's regression figure: predictions after 0, 1 and 10 steps."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from metajax.tasks.regression_sampling import sample_regression_tasks


def plot_adaptation(params, family, apply_fn, inner, path: str, seed: int,
                    shots: int = 5, steps=(0, 1, 10), num_tasks: int = 3):
  """True curves, K support points and predictions after `steps` steps."""
  key = jax.random.fold_in(jax.random.key(seed), 7)
  tasks, task_params = sample_regression_tasks(family, key, num_tasks,
                                               shots, 1)
  low, high = family.x_range
  grid_Gx1 = jnp.linspace(low, high, 200)[:, None]
  fig, axes = plt.subplots(1, num_tasks, figsize=(4 * num_tasks, 3.2))
  for t, ax in enumerate(np.atleast_1d(axes)):
    support = jax.tree.map(lambda leaf: leaf[t], tasks.support)
    one = jax.tree.map(lambda v: v[t], task_params)
    ax.plot(grid_Gx1[:, 0], family.function(one, grid_Gx1)[:, 0],
            "k-", label="ground truth")
    ax.plot(support[0][:, 0], support[1][:, 0], "r^", label=f"{shots} points")
    for n in steps:
      adapted = inner.run(params, support, num_steps=n).params
      ax.plot(grid_Gx1[:, 0], apply_fn(adapted, grid_Gx1)[:, 0],
              "--", label=f"after {n} steps")
    ax.set_title(f"task {t}")
  np.atleast_1d(axes)[0].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
