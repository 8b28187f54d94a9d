"""MAML-RL on half-cheetah forward/backward (the MAML paper, section 5.3),
brax.

The velocity experiment (`cheetah_vel_maml_rl`) with the direction tasks:
reward d v_x - 0.05 |a|^2, d = +1 or -1 with equal odds, horizon 200.
Needs brax: `pip install -e ".[rl]"`.

  python -m metajax cheetah_dir_maml_rl

Paper (MAML, figure 5): MAML -50.7 / 293.2 / 313.5 / 315.7 after 0 / 1 /
2 / 3 steps, oracle 442.7 (rllab's MuJoCo half-cheetah, not brax: compare
the shape). Ours: not run at this size (a GPU run). The reduced CPU run of
the velocity experiment (`--outer.meta_batch_size=8
--algorithm.trajectories=10 --task.horizon=50 --outer.num_meta_steps=90`,
10 minutes on the 2-core CPU alone) gave -11.9 / -7.4 / -5.8 / -2.2, a gain
that the policy after one meta-iteration shows too (-10.7 / -7.6 / -5.4 /
-3.9): plain adaptation, not yet meta-learning; see docs/rl.md.
"""
import dataclasses

from experiments import cheetah_vel_maml_rl
from metajax.tasks.rl.cheetah_task import CheetahDirectionConfig
from metajax.training.config import Config


def get_config() -> Config:
  return dataclasses.replace(cheetah_vel_maml_rl.get_config(),
                             task=CheetahDirectionConfig())
