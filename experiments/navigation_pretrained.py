"""The MAML paper's "pretrained" baseline on 2D navigation.

One policy trained by the plain policy gradient of the pre-adaptation return
on all tasks jointly (`algorithm.pretrain`: no inner step, no meta-gradient;
LVC's first order, Adam 1e-3, meta-batch 20 x 20 trajectories, 500
iterations, as `navigation_maml_rl`), then evaluated with the same test-time
adaptation as MAML (the paper's 40 goals, 0-3 steps at 0.5 then 0.25, 40
trajectories each).

  python -m metajax navigation_pretrained

Paper: -40.8 / -19.7 / -11.7 / -8.5 after 0 / 1 / 2 / 3 steps. Ours (500
iterations, the 2-core CPU alone, 2026-12-07): -40.1 / -13.8 / -5.6 / -4.4,
close to MAML's after two steps. docs/rl.md, "Estimators, outer steps and
baselines on 2D navigation".
"""
from metajax.training.config import override

from experiments import navigation_maml_rl


def get_config():
  return override(navigation_maml_rl.get_config(), {
      "algorithm.pretrain": True})
