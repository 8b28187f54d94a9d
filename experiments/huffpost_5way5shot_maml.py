"""MAML on HuffPost 5-way 5-shot (Bao et al.'s protocol), CPU budget.

`experiments._text_base.mean_config` with 5,000 meta-steps (as the 1-shot
file): mean of frozen GloVe vectors, a 256-unit ReLU layer, 5 inner SGD
steps at 0.1 in training, 10 at test.

  python -m metajax huffpost_5way5shot_maml

Measured (2026-12-07, 2-core CPU, 27 s): 49.7 +- 0.5 % after 10 steps,
under the untrained nearest mean (idf-weighted GloVe, cosine): 55.7 %.
Paper (Bao et al. 2020, Table 2): MAML 49.3 %, theirs 63.5 %.
"""
from experiments._text_base import mean_config


def get_config():
  return mean_config("huffpost", shots=5, algorithm="maml",
                     num_meta_steps=5_000)
