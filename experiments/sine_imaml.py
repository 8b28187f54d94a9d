"""iMAML on sine tasks: 5 proximal SGD steps at 0.01, lambda = 1 / 0.01.

With lambda = 1 / inner.lr the inner SGD steps are the fixed-point
iteration phi <- theta - inner.lr * grad L(phi) of the proximal problem, so
its first step is MAML's; implicit gradients by 5 CG steps. Evaluated with
the same proximal SGD steps.

  python -m metajax sine_imaml --run_dir=runs/sine_imaml
  python -m metajax sine_imaml --run_dir=runs/sine_imaml --eval_only

Unstable on this regression: nothing differentiates through the inner loop,
so the outer loop lets the support loss's curvature grow past 2 / inner.lr
(and its negative curvature past -lambda, making I + H / lambda indefinite);
the inner SGD then diverges on some tasks and training stops at the first
non-finite step (about meta-step 3.5k), keeping the last good parameters
(`--eval_only` evaluates them). Classification losses (Omniglot), whose
curvature is bounded, are iMAML's intended setting.
"""
from metajax.training.config import override

from experiments import sine


def get_config():
  return override(
      sine.get_config(), {
      "algorithm": "imaml",
      "inner.steps": 5,
      "algorithm.lam": 100.0,
      "algorithm.cg_steps": 5,
      "outer.num_meta_steps": 20000})
