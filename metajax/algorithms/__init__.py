"""Meta-learning algorithms, one small module each, picked by config name.

Each module `metajax/algorithms/<name>.py` defines
`make_meta_grad(config, problem) -> meta_grad_fn` (see `metajax.core.meta_step`;
set `meta_grad_fn.needs_step = True` to be given the meta-step) and may
define the hooks:
  check(config)                      raise `ConfigError` for bad settings
  init_meta_params(config, params)   meta-parameters beyond the model init
  eval_adaptation(config, problem, meta_params) -> (init_params, InnerLoop)
                                     how a meta-test task is adapted
  evaluate(config, problem, meta_params) -> dict
                                     a whole evaluation protocol of its own

Shipped: maml, fomaml, pretrain, reptile, metasgd, anil, boil, mamlpp,
imaml, protonet. Private helpers live in `_`-prefixed modules.
"""
import importlib
import pkgutil

from metajax.training.config import ConfigError


def available() -> list:
  """Names of the algorithm modules shipped."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_"))


def get_algorithm(name: str):
  """The algorithm module called `name`; ConfigError listing known names."""
  if name not in available():
    raise ConfigError(f"config field 'algorithm': unknown algorithm {name!r}; "
                      f"expected one of {available()}")
  return importlib.import_module(f"metajax.algorithms.{name}")
