"""The seed article's own setting: every task is the same line y = 2x + 3.

With one task there is nothing to meta-learn: the learned initialisation
is itself (almost) the line, so it nearly fits every task before any
adaptation (query MSE ~0.03 vs > 1 for `seed_linear`), and adaptation only
reaches the noise floor 0.1^2 = 0.01. Kept as a config so that behaviour is tested.

  python -m metajax seed_degenerate
"""
from metajax.training.config import override

from experiments import seed_linear


def get_config():
  return override(
      seed_linear.get_config(), {
      "task.slope_range": (2.0, 2.0),
      "task.intercept_range": (3.0, 3.0)})
