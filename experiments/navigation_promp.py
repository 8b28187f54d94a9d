"""ProMP (Rothfuss et al. 2019) on 2D navigation: MAML-RL with ProMP's outer
step.

Each meta-iteration samples once (20 goals x 20 trajectories before and after
one LVC inner step at 0.1), then takes 5 Adam steps (rate 1e-3, moments kept
across iterations) on the clipped likelihood ratio of the adapted policies
(clip 0.3) minus 5e-4 times the pre-update policies' KL: ProMP's point-mass
settings. The step is applied by the trainer's SGD at rate 1. 500
iterations; evaluation as `navigation_maml_rl` (40 goals, 0-3 steps).

  python -m metajax navigation_promp

Measured (2026-12-07, the 2-core CPU alone, 302 s of training): -47.8 /
-20.9 / -16.9 / -15.3 after 0 / 1 / 2 / 3 steps, LVC with Adam's adapted
returns. docs/rl.md, "Estimators,
outer steps and baselines on 2D navigation".
"""
from metajax.training.config import override

from experiments import navigation_maml_rl


def get_config():
  return override(navigation_maml_rl.get_config(), {
      "algorithm.outer_step": "promp", "outer.optimizer": "sgd",
      "outer.lr": 1.0})
