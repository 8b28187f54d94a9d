"""iMAML on sine tasks: the proximal problem solved by 20 gradient steps
under a backtracking line search, implicit gradients by 5 CG steps.

lambda = 10 here, not the 0.5-2 of the paper's image tasks: it is measured
against the support loss's curvature, which for MSE on amplitudes up to 5 is
two orders of magnitude above a 5-way cross-entropy's (MAML's one step at
0.01 acts like lambda = 100). Fixed-rate steps at 0.02 diverge on the
tasks of largest amplitude (curvature above 2 / 0.02) and make a run
non-finite within a few hundred meta-steps; `algorithm.line_search` scales
each step back until the proximal loss decreases. `proximal_grad_norm` in
metrics.jsonl says how close the 20 steps come to the minimiser, which the
implicit gradient assumes. Evaluated with the same searched proximal
steps, scored after 1, 10 and 20 of them.

  python -m metajax sine_imaml --run_dir=runs/sine_imaml

The README's algorithm table gives what this reaches.
"""
from metajax.training.config import override

from experiments import sine


def get_config():
  return override(
      sine.get_config(), {
      "algorithm": "imaml",
      "inner.steps": 20,
      "inner.lr": 0.02,
      "algorithm.lam": 10.0,
      "algorithm.line_search": True,
      "algorithm.cg_steps": 5,
      "eval.inner_steps": (1, 10, 20),
      "outer.num_meta_steps": 40_000})
