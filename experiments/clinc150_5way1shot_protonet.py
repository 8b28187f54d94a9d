"""ProtoNets on CLINC150 5-way 1-shot, intents split by domain, CPU budget.

`experiments._text_base.mean_config` (mean of frozen GloVe vectors, a
256-unit ReLU layer, 3,000 meta-steps); meta-train on 6 domains, meta-test
on small_talk and meta (`metajax.tasks.text.task`). Other shapes by
override, e.g. 30-way 5-shot: --task.ways=30 --task.shots=5.

  python -m metajax clinc150_5way1shot_protonet

Measured (2-core CPU shared with other jobs): 58.8 +- 0.7 %, 3,000 steps
in 34 s wall; below the untrained nearest mean (char 3-grams, tf-idf,
cosine: 64.2 %; GloVe: 60.1 %). No published number on this split.
"""
from experiments._text_base import mean_config


def get_config():
  return mean_config("clinc150", shots=1, algorithm="protonet")
