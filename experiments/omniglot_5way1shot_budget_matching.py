"""Matching Networks (no full-context embeddings) on the strided Conv4's
features, under the shared 4-minute CPU budget.

One-sided cosine attention over the support (only the support embeddings
are normalised), -log P of the true class; no inner loop, so the `inner`
section is back at its defaults. See `omniglot_5way1shot_budget` for what
the budget fixes.

  python -m metajax omniglot_5way1shot_budget_matching

Paper: Vinyals et al. 2016, Table 1, Omniglot 5-way 1-shot without
fine-tuning or FCE: 98.1 % (their Conv4, 64-filter max-pooled).
"""
from experiments.omniglot_5way1shot_budget import budget_config
from metajax.algorithms.base import InnerConfig

NUM_STEPS = 4_000  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "matching",
      "inner.lr": InnerConfig().lr})  # no inner loop: back to the default
