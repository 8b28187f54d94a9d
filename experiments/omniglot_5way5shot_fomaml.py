"""First-order MAML on Omniglot 5-way 5-shot, otherwise `omniglot_5way5shot`.

  python -m metajax omniglot_5way5shot_fomaml
"""
import dataclasses

from experiments import omniglot_5way5shot


def get_config():
  return dataclasses.replace(omniglot_5way5shot.get_config(), algorithm="fomaml")
