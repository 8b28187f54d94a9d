"""MAML on Omniglot 5-way 5-shot, the MAML paper's settings (a GPU run).

  python -m metajax omniglot_5way5shot

Paper (Finn et al. 2017, Table 1): 99.9 +- 0.1 %.
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot


def get_config():
  return override(
      omniglot_5way1shot.get_config(), {
      "task.shots": 5,
      "task.queries": 5})
