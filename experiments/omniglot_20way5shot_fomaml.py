"""First-order MAML on Omniglot 20-way 5-shot, otherwise `omniglot_20way5shot`.

  python -m metajax omniglot_20way5shot_fomaml
"""
import dataclasses

from experiments import omniglot_20way5shot


def get_config():
  return dataclasses.replace(omniglot_20way5shot.get_config(), algorithm="fomaml")
