"""Prototypical Networks on the strided Conv4's features (no inner loop), under
the shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_protonet

Paper: Snell et al. 2017: 98.8 % (their Conv4, 60-way training episodes).
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 4_000  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "protonet"})
