"""MAML on Omniglot 5-way 5-shot, the MAML paper's settings (a GPU run).

  python -m metajax omniglot_5way5shot

Paper (Finn et al. 2017, Table 1): 99.9 +- 0.1 %.
"""
import dataclasses

from experiments import omniglot_5way1shot


def get_config():
  return dataclasses.replace(omniglot_5way1shot.get_config(), num_support=5,
                             num_query=5)
