"""Meta-learning algorithms, one small module each, picked by config name.

Each module defines `ALGORITHM`, an `Algorithm` (`metajax.algorithms.base`):
its name, family, config section, meta-gradient builder and named optional
hooks. `get(name)` returns it; the registry below lists every one shipped.
"""
from metajax.algorithms import (
    anil, boil, cnp, fomaml, imaml, maml, maml_rl, mamlpp, matching, metasgd,
    pretrain, protonet, reptile, snail)
from metajax.algorithms.base import Algorithm, InnerConfig, inner_loop
from metajax.algorithms.maml import maml_meta_grad
from metajax.settings import ConfigError

REGISTRY = {module.ALGORITHM.name: module.ALGORITHM for module in (
    maml, fomaml, reptile, metasgd, anil, boil, mamlpp, imaml, protonet,
    matching, cnp, snail, pretrain, maml_rl)}


def available() -> list:
  """Names of the algorithms shipped."""
  return sorted(REGISTRY)


def get(name: str) -> Algorithm:
  """The algorithm called `name`; ConfigError listing the known names."""
  if name not in REGISTRY:
    raise ConfigError(f"config field 'algorithm': unknown algorithm {name!r}; "
                      f"expected one of {available()}")
  return REGISTRY[name]
