"""ProMP (Rothfuss et al. 2019) on 2D navigation: MAML-RL with ProMP's outer
step.

Each meta-iteration samples once (20 goals x 20 trajectories before and after
one LVC inner step at 0.5, as `navigation_maml_rl`), then takes 5 Adam steps
(rate 1e-3, moments kept across iterations) on the clipped likelihood ratio
of the adapted policies (clip 0.3) minus 5e-4 times the pre-update
policies' KL (fixed; `--algorithm.promp_adaptive_kl=true` adapts it towards
an inner KL of 0.01): ProMP's point-mass settings. The step is applied by
the trainer's SGD at rate 1. 500 iterations; evaluation as
`navigation_maml_rl` (the paper's 40 goals, 0-3 steps).

  python -m metajax navigation_promp

Measured (2026-12-07, the 2-core CPU alone, 310 s of training): -41.6 /
-10.8 / -13.9 / -15.9 after 0 / 1 / 2 / 3 steps: level with LVC and Adam
after one step, worse after more; with the adaptive coefficient -40.8 /
-9.9 / -10.7 / -11.4. docs/rl.md, "Estimators, outer steps and baselines
on 2D navigation".
"""
from metajax.training.config import override

from experiments import navigation_maml_rl


def get_config():
  return override(navigation_maml_rl.get_config(), {
      "algorithm.outer_step": "promp", "outer.optimizer": "sgd",
      "outer.lr": 1.0})
