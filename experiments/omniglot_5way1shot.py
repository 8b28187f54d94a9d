"""MAML on Omniglot 5-way 1-shot with the MAML paper's settings (a GPU run).

Conv4 with strided convolutions (the paper's Omniglot network), one inner
SGD step at 0.4 in training and three at test, meta-batch 32, Adam 1e-3,
60k meta-steps; 600 meta-test tasks. Queries per class as in MAML's code
(K) for training; 15 per class for evaluation.

  python -m metajax omniglot_5way1shot

Paper (Finn et al. 2017, Table 1): 98.7 +- 0.4 %.
"""
from metajax.algorithms.base import InnerConfig
from metajax.models.configs import Conv4Config
from metajax.tasks.base import EvalConfig
from metajax.tasks.omniglot.task import OmniglotConfig
from metajax.training.config import Config, OuterConfig, RunConfig

def get_config() -> Config:
  return Config(
      task=OmniglotConfig(ways=5, shots=1, queries=1, eval_queries=15),
      model=Conv4Config(strided=True),
      inner=InnerConfig(steps=1, lr=0.4),
      outer=OuterConfig(lr=1e-3, meta_batch_size=32, num_meta_steps=60_000,
                        steps_per_call=1),
      eval=EvalConfig(inner_steps=(1, 3), num_tasks=600, every=5_000),
      run=RunConfig(log_every=100, checkpoint_every=5_000))
