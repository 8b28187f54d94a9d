"""MAML (Finn et al., 2017): differentiate the query loss through adaptation.

Second order by default; `first_order=True` in the config gives FOMAML.
"""
from metajax.algorithms._common import inner_loop
from metajax.core.meta_step import maml_meta_grad


def make_meta_grad(config, problem):
  return maml_meta_grad(inner_loop(config, problem))
