"""MAML on Omniglot 5-way 1-shot with the MAML paper's settings (a GPU run).

Conv4 with strided convolutions (the paper's Omniglot network), one inner
SGD step at 0.4 in training and three at test, meta-batch 32, Adam 1e-3,
60k meta-steps; 600 meta-test tasks. Queries per class as in MAML's code
(K) for training; 15 per class for evaluation.

  python -m metajax omniglot_5way1shot

Paper (Finn et al. 2017, Table 1): 98.7 +- 0.4 %.
"""
from metajax.training.config import Config


def get_config() -> Config:
  return Config(
      task="omniglot", algorithm="maml", model="conv4_strided", num_ways=5,
      num_support=1, num_query=1, meta_batch_size=32, inner_steps=1,
      inner_lr=0.4, outer_lr=1e-3, num_meta_steps=60_000, steps_per_call=1,
      log_every=100, eval_every=5_000, checkpoint_every=5_000,
      eval_inner_steps=(1, 3), eval_num_query=15, eval_num_tasks=600)
