"""The seed article's example done right: a distribution of lines.

y = a x + b + N(0, 0.1^2), x U[0, 1], a and b U[-3, 3] per task; 20 points
per task split 10 support / 10 query; a linear model adapted with 5 SGD
steps at 0.3; meta-trained by differentiating through the adaptation.

  python -m metajax seed_linear
"""
from metajax.training.config import Config


def get_config() -> Config:
  return Config(
      task="linear", algorithm="maml", model="mlp", hidden_sizes=(),
      slope_range=(-3.0, 3.0), intercept_range=(-3.0, 3.0), x_range=(0.0, 1.0),
      noise_std=0.1, meta_batch_size=25, num_support=10, num_query=10,
      inner_steps=5, inner_lr=0.3, outer_lr=1e-2, num_meta_steps=2000,
      steps_per_call=10, log_every=100, eval_shots=(10,),
      eval_inner_steps=(1, 5))
