"""MAML on Omniglot 20-way 5-shot, the MAML paper's settings (a GPU run).

  python -m metajax omniglot_20way5shot

Paper (Finn et al. 2017, Table 1): 98.9 +- 0.2 %.
"""
from metajax.training.config import override

from experiments import omniglot_20way1shot


def get_config():
  return override(
      omniglot_20way1shot.get_config(), {
      "task.shots": 5,
      "task.queries": 5})
