"""Reptile (batched, as in the paper's Omniglot runs: 5 inner Adam steps at
1e-3 on support and query together, outer SGD at epsilon 1 annealed to 0; 50
Adam steps at test), under the shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_reptile

Paper: Nichol et al. 2018: 97.68 +- 0.04 % (transductive), 95.39 +- 0.09 %
(not).
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 700  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "reptile",
      "inner.steps": 5,
      "inner.optimizer": "adam",
      "inner.lr": 0.001,
      "outer.optimizer": "sgd",
      "outer.lr": 1.0,
      "outer.schedule": "linear",
      "eval.inner_steps": (5, 50)})
