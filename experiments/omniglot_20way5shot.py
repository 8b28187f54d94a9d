"""MAML on Omniglot 20-way 5-shot, the MAML paper's settings (a GPU run).

  python -m metajax omniglot_20way5shot

Paper (Finn et al. 2017, Table 1): 98.9 +- 0.2 %.
"""
import dataclasses

from experiments import omniglot_20way1shot


def get_config():
  return dataclasses.replace(omniglot_20way1shot.get_config(), num_support=5,
                             num_query=5)
