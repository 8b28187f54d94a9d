"""First-order MAML on Omniglot 20-way 5-shot, otherwise `omniglot_20way5shot`.

  python -m metajax omniglot_20way5shot_fomaml
"""
from metajax.training.config import override

from experiments import omniglot_20way5shot


def get_config():
  return override(
      omniglot_20way5shot.get_config(), {
      "algorithm": "fomaml"})
