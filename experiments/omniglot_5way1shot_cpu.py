"""MAML on Omniglot 5-way 1-shot within a 30-minute budget on a 2-core CPU.

The paper's settings (`omniglot_5way1shot`: strided Conv4, one inner step at
0.4, three at test, meta-batch 32, Adam 1e-3) for 7,000 meta-steps instead
of 60,000, with the outer rate decayed to zero on a cosine (a short run gains
more from annealing than from a constant rate), validation every 1,000.

  python -m metajax omniglot_5way1shot_cpu

The README's Omniglot table gives the accuracy and wall-clock this reached.
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot


def get_config():
  return override(
      omniglot_5way1shot.get_config(), {
      "outer.num_meta_steps": 7000,
      "outer.schedule": "cosine",
      "eval.every": 1000,
      "run.checkpoint_every": 1000})
