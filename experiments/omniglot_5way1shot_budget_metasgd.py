"""Meta-SGD (a learned rate per weight, initialised to MAML's 0.4), under the
shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_metasgd

Paper: Li et al. 2017: 99.53 +- 0.26 %.
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 1_300  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "metasgd"})
