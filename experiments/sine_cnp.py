"""Conditional Neural Process on sine tasks: the MAML sine setting, the
task's MLP replaced by the neural process.

The support and query sets, meta-batch, Adam 1e-3 and the 600 evaluation
tasks at K=5 and K=10 are `sine`'s; the neural process (Garnelo et al.
2018: encoder 4 x 128, mean aggregation, decoder 2 x 128 to a Gaussian with
sigma = 0.1 + 0.9 softplus) is trained by query log-likelihood, each
training task reading a random number (2 to 10) of its support points, as
the paper trains on random context sizes. No gradient steps at test time:
the row is the query MSE of the predicted mean (and the Gaussian NLL).

  python -m metajax sine_cnp

Paper: Garnelo et al. report no sine MSE (their 1-D regression is on GP
samples); the comparison is MAML's row in the README.
"""
from metajax.training.config import override

from experiments import sine

NUM_STEPS = 30_000


def get_config():
  return override(
      sine.get_config(), {
      "algorithm": "cnp",
      "algorithm.min_context": 2,
      "outer.num_meta_steps": NUM_STEPS})
