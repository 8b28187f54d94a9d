"""First-order MAML on Omniglot 5-way 5-shot, otherwise `omniglot_5way5shot`.

  python -m metajax omniglot_5way5shot_fomaml
"""
from metajax.training.config import override

from experiments import omniglot_5way5shot


def get_config():
  return override(
      omniglot_5way5shot.get_config(), {
      "algorithm": "fomaml"})
