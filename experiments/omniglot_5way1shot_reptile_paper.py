"""Reptile on Omniglot 5-way 1-shot with the paper's settings, on a CPU budget.

Nichol et al. 2018's Omniglot run: 10 examples per class in meta-training
(here 1 support + 9 query, concatenated: Reptile does not split them), 5
inner Adam steps at 1e-3 with beta1 = 0 on mini-batches of 10, meta-batch 5,
outer SGD at epsilon 1 annealed linearly to 0; at test, 50 Adam steps on the
5 support images. The paper runs 100k meta-steps; this runs what about
eight minutes of 2-core CPU buys, validating every 1,000 steps so that
learning shows across the run (validation.jsonl, the README's row).

  python -m metajax omniglot_5way1shot_reptile_paper

Paper: 95.39 +- 0.09 % (not transductive), 97.68 +- 0.04 % (transductive).
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot_cpu

NUM_STEPS = 10_000


def get_config():
  return override(
      omniglot_5way1shot_cpu.get_config(), {
      "algorithm": "reptile",
      "algorithm.inner_batch_size": 10,
      "task.queries": 9,
      "inner.steps": 5,
      "inner.optimizer": "adam",
      "inner.lr": 0.001,
      "inner.adam_b1": 0.0,
      "outer.meta_batch_size": 5,
      "outer.optimizer": "sgd",
      "outer.lr": 1.0,
      "outer.schedule": "linear",
      "outer.num_meta_steps": NUM_STEPS,
      "eval.inner_steps": (1, 5, 50),
      "eval.every": 1000,
      "run.checkpoint_every": 0})
