"""The MAML paper's "pretrained" baseline on sine tasks.

One network trained on all tasks jointly (same budget as `sine`), then
fine-tuned at evaluation exactly like MAML (SGD 0.01, 1/5/10 steps).

  python -m metajax sine_pretrained
"""
from metajax.training.config import override

from experiments import sine


def get_config():
  return override(
      sine.get_config(), {
      "algorithm": "pretrain"})
