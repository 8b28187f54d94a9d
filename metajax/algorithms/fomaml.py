"""First-order MAML: MAML with stop-gradient through the inner gradients."""
from metajax.algorithms._common import inner_loop
from metajax.core.meta_step import maml_meta_grad


def make_meta_grad(config, problem):
  return maml_meta_grad(inner_loop(config, problem, first_order=True))
