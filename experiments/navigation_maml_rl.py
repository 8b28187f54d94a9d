"""MAML-RL on 2D navigation (the MAML paper, section 5.3), pure JAX.

Point navigation to goals in [-0.5, 0.5]^2, horizon 100; Gaussian MLP policy
2 x 100 ReLU; 20 trajectories per task and step; one inner policy-gradient
step at 0.5 (the paper's code, `maml_trpo_point.py`); meta-batch 20; LVC
meta-gradient (`--algorithm.estimator=dice`, `loaded_dice` or `surrogate`
for the others); Adam 1e-3 outer (`--algorithm.outer_step=trpo
--outer.optimizer=sgd --outer.lr=1` for the paper's TRPO). Evaluation as
the paper's `test_maml_point.py`: its 40 goals, return after 0-3 test-time
steps at 0.5 then 0.25, 40 fresh trajectories (4000 steps) each.

  python -m metajax navigation_maml_rl

Paper (cbfinn/maml_rl saved results): MAML -40.4 / -11.7 / -3.3 / -3.2 after
0 / 1 / 2 / 3 steps; pretrained -40.8 / -19.7 / -11.7 / -8.5; random init
-82.7 / -58.0 / -53.8 / -46.8; oracle -2.3. Ours (500 iterations, 65 s on
the 2-core CPU alone, 2026-12-07): -40.3 / -10.4 / -5.2 / -4.7; see
docs/rl.md.
"""
from metajax.algorithms.base import InnerConfig
from metajax.algorithms.maml_rl import MamlRLConfig
from metajax.models.configs import MLPConfig
from metajax.tasks.base import EvalConfig
from metajax.tasks.rl.task import NavigationConfig
from metajax.training.config import Config, OuterConfig, RunConfig


def get_config() -> Config:
  return Config(
      task=NavigationConfig(),
      model=MLPConfig(hidden_sizes=(100, 100), activation="relu"),
      algorithm=MamlRLConfig(estimator="lvc", trajectories=20,
                             eval_lrs=(0.5, 0.25), eval_trajectories=40),
      inner=InnerConfig(steps=1, lr=0.5),
      outer=OuterConfig(lr=1e-3, meta_batch_size=20, num_meta_steps=500,
                        steps_per_call=1),
      eval=EvalConfig(num_tasks=40, inner_steps=(1, 2, 3)),
      run=RunConfig(log_every=10, pre_metrics=False))
