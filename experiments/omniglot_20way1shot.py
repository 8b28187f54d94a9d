"""MAML on Omniglot 20-way 1-shot, the MAML paper's settings (a GPU run).

Five inner SGD steps at 0.1 in training and at test, meta-batch 16.

  python -m metajax omniglot_20way1shot

Paper (Finn et al. 2017, Table 1): 95.8 +- 0.3 %.
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot


def get_config():
  return override(
      omniglot_5way1shot.get_config(), {
      "task.ways": 20,
      "outer.meta_batch_size": 16,
      "inner.steps": 5,
      "inner.lr": 0.1,
      "eval.inner_steps": (1, 5)})
