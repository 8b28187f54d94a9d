"""iMAML on sine tasks in the paper's regime: lambda = 2, the proximal problem
solved by 100 inner Adam steps at 0.02, implicit gradients by 5 CG steps.

The inner solver runs far enough to reach the neighbourhood of the proximal
minimiser (`proximal_grad_norm` in metrics.jsonl says how close), which the
implicit gradient assumes; evaluated with the same proximal Adam steps,
scored after 1, 10 and 100 of them.

  python -m metajax sine_imaml --run_dir=runs/sine_imaml

The README's algorithm table gives what this reaches.
"""
from metajax.training.config import override

from experiments import sine


def get_config():
  return override(
      sine.get_config(), {
      "algorithm": "imaml",
      "inner.steps": 100,
      "inner.optimizer": "adam",
      "inner.lr": 0.02,
      "algorithm.lam": 2.0,
      "algorithm.cg_steps": 5,
      "eval.inner_steps": (1, 10, 100),
      "outer.num_meta_steps": 10_000})
