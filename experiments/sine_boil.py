"""BOIL on sine tasks: MAML's setting, everything but the last layer adapts.

  python -m metajax sine_boil --run_dir=runs/sine_boil

Measured (600 tasks, 95% CI): K=5 MSE 0.598 +- 0.049 after 1 step, 0.270 +-
0.027 after 10.
"""
import dataclasses

from experiments import sine


def get_config():
  return dataclasses.replace(sine.get_config(), algorithm="boil",
                             num_meta_steps=40_000)
