"""A Conditional Neural Process on the strided Conv4's features, under the
shared 4-minute CPU budget.

The Conv4's body embeds the images; the neural process encodes each
(embedding, one-hot label) support pair, averages the codes, and decodes
each query's logits from [code, query embedding]; body and process are
trained together on the query cross-entropy. No inner loop, so the `inner`
section is back at its defaults. See `omniglot_5way1shot_budget` for what
the budget fixes.

  python -m metajax omniglot_5way1shot_budget_cnp

The attentive variant: the same with `--algorithm.variant=anp`.

Paper: Garnelo et al. 2018, Table 2, Omniglot 5-way 1-shot: 95.3 % (their
own encoder and training budget).
"""
from experiments.omniglot_5way1shot_budget import budget_config
from metajax.algorithms.base import InnerConfig

NUM_STEPS = 4_000  # What 4 minutes of this CPU buys; see the README.


def get_config():
  return budget_config(
      NUM_STEPS, {
      "algorithm": "cnp",
      "inner.lr": InnerConfig().lr})  # no inner loop: back to the default
