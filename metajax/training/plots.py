"""Plots of a run: the learning curve and, for sine, the paper's figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
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
