"""First-order MAML on Omniglot 20-way 1-shot, otherwise `omniglot_20way1shot`.

  python -m metajax omniglot_20way1shot_fomaml
"""
from metajax.training.config import override

from experiments import omniglot_20way1shot


def get_config():
  return override(
      omniglot_20way1shot.get_config(), {
      "algorithm": "fomaml"})
