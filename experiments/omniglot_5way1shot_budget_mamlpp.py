"""MAML++ (2 inner steps with learned per-layer, per-step rates, multi-step
loss annealed over the first third of the run, first-order for the first
third, cosine outer rate), under the shared 4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes.

  python -m metajax omniglot_5way1shot_budget_mamlpp

Paper: Antoniou et al. 2019: 99.47 % (5 steps, 150k meta-steps).
"""
from experiments.omniglot_5way1shot_budget import budget_config

NUM_STEPS = 800  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "mamlpp",
      "inner.steps": 2,
      "algorithm.msl_anneal_steps": NUM_STEPS // 3,
      "algorithm.first_order_until": NUM_STEPS // 3,
      "eval.inner_steps": (1, 2, 3)})
