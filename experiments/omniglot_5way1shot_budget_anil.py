"""ANIL (only the final Dense layer adapts), under the shared 4-minute CPU
budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_anil

Paper: Raghu et al. 2020 report Omniglot 20-way only; MAML's 98.7 % is the
reference.
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 3_800  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "anil"})
