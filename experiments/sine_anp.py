"""An Attentive Neural Process on sine tasks: `sine_cnp` with the mean
aggregation replaced by multi-head cross-attention (Kim et al. 2019's
deterministic path: 8 heads, queries and keys through a shared 2 x 128
MLP, the support codes as values).

  python -m metajax sine_anp

Paper: Kim et al. report no sine MSE (their 1-D regression is on GP
samples); the comparison is MAML's and the CNP's rows in the README.
"""
from metajax.training.config import override

from experiments import sine_cnp


def get_config():
  return override(sine_cnp.get_config(), {"algorithm.variant": "anp"})
