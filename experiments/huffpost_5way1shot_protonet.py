"""ProtoNets on HuffPost 5-way 1-shot (Bao et al.'s protocol), CPU budget.

`experiments._text_base.mean_config`: the mean of the frozen GloVe vectors
of a headline through a 256-unit ReLU layer, squared Euclidean distances
to the prototypes; 3,000 meta-steps of 8 tasks, Adam 1e-3 on a cosine;
1,000 meta-test episodes from a fixed seed, 25 queries per class. Bao et
al.'s Kim CNN: --model=text_cnn (1-shot, 1,000 steps: 31.9 %).

  python -m metajax huffpost_5way1shot_protonet

Measured (2-core CPU shared with other jobs): 36.1 +- 0.5 %, 3,000 steps
in 30 s wall (10,000 steps: 35.9 %, no gain).
Untrained nearest mean (idf-weighted GloVe, cosine): 34.5 %.
Paper (Bao et al. 2020, Table 2): ProtoNet 35.7 %, MAML 35.9 %, theirs
43.0 %.
"""
from experiments._text_base import mean_config


def get_config():
  return mean_config("huffpost", shots=1, algorithm="protonet")
