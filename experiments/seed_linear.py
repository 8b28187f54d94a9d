"""The seed article's example done right: a distribution of lines.

y = a x + b + N(0, 0.1^2), x U[0, 1], a and b U[-3, 3] per task; 20 points
per task split 10 support / 10 query; a linear model adapted with 5 SGD
steps at 0.3; meta-trained by differentiating through the adaptation.

  python -m metajax seed_linear
"""
from metajax.algorithms.base import InnerConfig
from metajax.models.configs import MLPConfig
from metajax.tasks.base import EvalConfig
from metajax.tasks.regression import LinearConfig
from metajax.training.config import Config, OuterConfig, RunConfig

def get_config() -> Config:
  return Config(
      task=LinearConfig(slope_range=(-3.0, 3.0), intercept_range=(-3.0, 3.0),
                        x_range=(0.0, 1.0), noise_std=0.1, support_points=10,
                        query_points=10, eval_shots=(10,)),
      model=MLPConfig(hidden_sizes=()),
      inner=InnerConfig(steps=5, lr=0.3),
      outer=OuterConfig(lr=1e-2, meta_batch_size=25, num_meta_steps=2000,
                        steps_per_call=10),
      eval=EvalConfig(inner_steps=(1, 5)),
      run=RunConfig(log_every=100))
