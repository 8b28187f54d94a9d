"""First-order MAML: MAML with stop-gradient through the inner gradients."""
from metajax.algorithms.base import Algorithm, inner_loop, no_settings
from metajax.algorithms.maml import maml_meta_grad

FomamlConfig = no_settings("fomaml")

ALGORITHM = Algorithm(
    name="fomaml", family="optimization", config_class=FomamlConfig,
    make_meta_grad=lambda config, problem: maml_meta_grad(
        inner_loop(config, problem, first_order=True)))
