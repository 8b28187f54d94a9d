"""The MAML paper's "oracle" on 2D navigation: a policy told the goal.

The observation is the position followed by the goal
(`task.observe_goal`, the paper's `point_env_randgoal_oracle.py`); one
policy is trained by the plain policy gradient on goals drawn afresh every
iteration (`algorithm.pretrain`: LVC's first order, Adam 1e-3, 20 goals x
20 trajectories, 500 iterations), then scored on the paper's 40 test goals
before any adaptation (the paper's oracle row), and after test-time steps
as the other rows.

  python -m metajax navigation_oracle

Paper: -2.3. Ours (2026-12-07, the 2-core CPU alone, 23 s of training):
-3.3 +- 0.2 before adaptation; test-time steps at 0.5 make it worse (-18.2
after one). docs/rl.md, "Estimators, outer steps and baselines on 2D
navigation".
"""
from metajax.training.config import override

from experiments import navigation_maml_rl


def get_config():
  return override(navigation_maml_rl.get_config(), {
      "task.observe_goal": True, "algorithm.pretrain": True})
