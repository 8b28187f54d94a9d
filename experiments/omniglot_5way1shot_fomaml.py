"""First-order MAML on Omniglot 5-way 1-shot, otherwise `omniglot_5way1shot`.

  python -m metajax omniglot_5way1shot_fomaml
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot


def get_config():
  return override(
      omniglot_5way1shot.get_config(), {
      "algorithm": "fomaml"})
