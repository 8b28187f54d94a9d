"""Meta-learning algorithms, one small module each, picked by config name.

Each module `metajax/algorithms/<name>.py` defines
`make_meta_grad(config, problem) -> meta_grad_fn` (see `metajax.meta_step`)
and may define `check(config)` raising `ConfigError` for combinations that
make no sense.
"""
import importlib
import pkgutil

from metajax.config import ConfigError


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
