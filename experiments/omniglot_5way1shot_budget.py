"""MAML on Omniglot 5-way 1-shot: the algorithm table's 4-minute CPU budget.

Every `omniglot_5way1shot_budget*` experiment gets the same budget: about
four minutes of meta-training on the 2-core CPU (measured alone), the same
tasks (5-way 1-shot, one query per class in training, meta-batch 32), the
same strided Conv4, Adam 1e-3 annealed to zero on a cosine, and the same
evaluation (600 meta-test tasks, 15 queries per class). The number of
meta-steps is what four minutes buys each algorithm at its own cost per
step, fixed here so the command reproduces the row:

  python -m metajax omniglot_5way1shot_budget_<algorithm>

(this file is the MAML row). The paper budgets are 60k meta-steps and more;
the README's algorithm table gives both.
"""
from metajax.training.config import override

from experiments import omniglot_5way1shot_cpu

NUM_STEPS_MAML = 1_300  # What 4 minutes of this CPU buys MAML.


def budget_config(num_meta_steps: int, overrides: dict = None):
  """The shared budget setting with `num_meta_steps` and `overrides`
  (dotted config names, as on the command line)."""
  settings = {"outer.num_meta_steps": num_meta_steps,
              "outer.schedule": "cosine", "eval.every": 0,
              "run.checkpoint_every": 0}
  settings.update(overrides or {})
  return override(omniglot_5way1shot_cpu.get_config(), settings)


def get_config():
  return budget_config(NUM_STEPS_MAML)

