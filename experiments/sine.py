"""MAML sine regression, exactly the MAML paper's setting (section 5.1).

Amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]; MLP 1-40-40-1 ReLU, MSE;
K=10 support and 10 query points; one inner SGD step at 0.01; meta-batch 25;
Adam 1e-3; 70k meta-steps. Evaluation: 600 tasks (seed 1234), K=5 and K=10,
MSE after 1, 5 and 10 steps.

  python -m metajax sine

Expected (README table): K=5 MSE <= 0.67 after 1 step, <= 0.35 after 10.
"""
from metajax.algorithms.base import InnerConfig
from metajax.models.configs import MLPConfig
from metajax.tasks.regression import SineConfig
from metajax.training.config import Config, OuterConfig, RunConfig

def get_config() -> Config:
  return Config(
      task=SineConfig(support_points=10, query_points=10),
      model=MLPConfig(hidden_sizes=(40, 40), activation="relu"),
      inner=InnerConfig(steps=1, lr=0.01),
      outer=OuterConfig(lr=1e-3, meta_batch_size=25, num_meta_steps=70_000,
                        steps_per_call=10),
      run=RunConfig(log_every=1000))
