"""SNAIL (temporal convolutions and causal attention over the support
pairs and the query) on the strided Conv4's features, under the shared
4-minute CPU budget.

See `omniglot_5way1shot_budget` for what the budget fixes. The SNAIL is the
paper's Omniglot network at a quarter of its widths: attention(16, 8),
TC(6, 32), attention(64, 32), TC(6, 32), attention(128, 64): the learner
reads one sequence per query, and at full width it costs this CPU more than
the Conv4 does (docs/reproductions.md gives the trade). No inner loop: the
`inner` section is back at its defaults.

  python -m metajax omniglot_5way1shot_budget_snail

Paper: Mishra et al. 2018: 99.07 +- 0.16 % (full width, their own
embedding network, far more updates).
"""
import dataclasses

from experiments.omniglot_5way1shot_budget import budget_config
from metajax.algorithms.base import InnerConfig

NUM_STEPS = 3_400  # What 4 minutes of this CPU buys; see the README.

NO_INNER_LOOP = {f"inner.{name}": value for name, value in
                 dataclasses.asdict(InnerConfig()).items()}


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "snail", **NO_INNER_LOOP,
      "algorithm.tc_filters": 32,
      "algorithm.attention_sizes": (16, 64, 128)})
