"""MAML-RL on half-cheetah goal velocity (the MAML paper, section 5.3), brax.

brax's half-cheetah (`mjx` backend), reward -|v_x - v_goal| - 0.05 |a|^2
with v_goal ~ U[0, 2], horizon 200; Gaussian MLP policy 2 x 100 ReLU; 20
trajectories per task and step; one inner policy-gradient step at 0.1;
meta-batch 40; LVC meta-gradient; Adam 1e-3 outer (`--algorithm.outer_step=
trpo --outer.optimizer=sgd --outer.lr=1` for the paper's TRPO). Evaluation:
the paper's 40 test goals, return after 0-3 test-time steps at 0.1 then
0.05 on 20 trajectories each (the paper's 4000 steps). Needs brax: `pip
install -e ".[rl]"`.

  python -m metajax cheetah_vel_maml_rl

Paper (MAML, figure 5): MAML -129.5 / -78.6 / -66.6 / -60.8 after 0 / 1 /
2 / 3 steps, oracle -54.5 (rllab's MuJoCo half-cheetah, not brax: compare
the shape). Ours: not run at this size (180 s per meta-iteration measured
on the 2-core CPU alone: a GPU run). A reduced CPU run
(`--outer.meta_batch_size=8 --algorithm.trajectories=10 --task.horizon=50
--outer.num_meta_steps=90`, 10 minutes on the 2-core CPU alone) gave -62.6
/ -62.7 / -62.4 / -61.2: no adaptation gain at that budget; see
docs/rl.md.
"""
from metajax.algorithms.base import InnerConfig
from metajax.algorithms.maml_rl import MamlRLConfig
from metajax.models.configs import MLPConfig
from metajax.tasks.base import EvalConfig
from metajax.tasks.rl.cheetah_task import CheetahVelocityConfig
from metajax.training.config import Config, OuterConfig, RunConfig


def get_config() -> Config:
  return Config(
      task=CheetahVelocityConfig(),
      model=MLPConfig(hidden_sizes=(100, 100), activation="relu"),
      algorithm=MamlRLConfig(estimator="lvc", trajectories=20),
      inner=InnerConfig(steps=1, lr=0.1),
      outer=OuterConfig(lr=1e-3, meta_batch_size=40, num_meta_steps=500,
                        steps_per_call=1),
      eval=EvalConfig(num_tasks=40, inner_steps=(1, 2, 3)),
      run=RunConfig(log_every=5, pre_metrics=False))
