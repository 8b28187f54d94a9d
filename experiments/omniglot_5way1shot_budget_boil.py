"""BOIL (only the body adapts; the head is frozen in the inner loop), under the
shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_boil

Paper: Oh et al. 2021 report no Omniglot 5-way 1-shot number.
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 1_300  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "boil"})
