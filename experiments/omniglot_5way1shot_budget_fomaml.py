"""First-order MAML, under the shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_fomaml

Paper: Finn et al. 2017: 98.3 +- 0.5 %.
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 2_400  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "fomaml"})
