"""MAML on HuffPost 5-way 1-shot (Bao et al.'s protocol), CPU budget.

`experiments._text_base.mean_config` with 5,000 meta-steps: the mean of
the frozen GloVe vectors through a 256-unit ReLU layer and a head, 5 inner
SGD steps at 0.1 in training, 10 at test. Bao et al.'s Kim CNN:
--model=text_cnn (about 2.4 s a step on this CPU).

  python -m metajax huffpost_5way1shot_maml

Measured (2-core CPU shared with other jobs): 36.9 +- 0.6 % after 10
inner steps, 5,000 steps in 64 s wall (1,000 steps: 34.0 %). Untrained
nearest mean (idf-weighted GloVe, cosine): 34.5 %. Paper (Bao et al.
2020, Table 2): MAML 35.9 %, ProtoNet 35.7 %, theirs 43.0 %.
"""
from experiments._text_base import mean_config


def get_config():
  return mean_config("huffpost", shots=1, algorithm="maml",
                     num_meta_steps=5_000)
