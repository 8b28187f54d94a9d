"""Matching Networks on HuffPost 5-way 1-shot (Bao et al.'s protocol), CPU.

`experiments._text_base.mean_config`: the mean of the frozen GloVe vectors
of a headline through a 256-unit ReLU layer; one-sided cosine attention
over the support; 3,000 meta-steps of 8 tasks, Adam 1e-3 on a cosine;
1,000 meta-test episodes from a fixed seed, 25 queries per class.

  python -m metajax huffpost_5way1shot_matching

Measured (2-core CPU shared with other jobs): 38.5 +- 0.6 %, 3,000 steps
in 42 s wall. Untrained nearest mean (idf-weighted GloVe, cosine): 34.5 %.
Paper (Bao et al. 2020, Table 2): MAML 35.9 %, ProtoNet 35.7 %, theirs
43.0 %.
"""
from experiments._text_base import mean_config


def get_config():
  return mean_config("huffpost", shots=1, algorithm="matching")
