"""A conditional neural process on HuffPost 5-way 1-shot, chosen on
validation classes.

`experiments._text_base.row_config` with the `idf` encoder (the idf-weighted
mean of the frozen GloVe vectors, a residual 256-unit ReLU branch starting
at zero, L2-normalised times a learned scale) under the CNP's per-class
aggregation and decoder, and 1000 meta-steps of 8 tasks at a constant Adam
rate of 1e-3, the stop chosen by
`experiments/analysis/text_select.py --encoders=idf huffpost_5way1shot_cnp`
among 500, 1000, 2000, 3000 on 1,000 validation episodes (classes 20-24;
best 36.3 %), never on the meta-test classes.

  python -m metajax huffpost_5way1shot_cnp

Measured (2026-12-07, 2-core CPU): 35.3 +- 0.6 % on the 1,000 meta-test
episodes (25 queries per class). Untrained nearest mean: 34.5 %
(idf-weighted GloVe, cosine).
Paper (Bao et al. 2020, Table 2): MAML 35.9 %, ProtoNet 35.7 %, theirs
43.0 %
"""
from experiments._text_base import row_config


def get_config():
  return row_config("huffpost", ways=5, shots=1, algorithm="cnp",
                    encoder="idf", num_meta_steps=1000)
