"""First-order MAML on Omniglot 20-way 1-shot, otherwise `omniglot_20way1shot`.

  python -m metajax omniglot_20way1shot_fomaml
"""
import dataclasses

from experiments import omniglot_20way1shot


def get_config():
  return dataclasses.replace(omniglot_20way1shot.get_config(), algorithm="fomaml")
