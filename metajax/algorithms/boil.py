"""BOIL (Oh et al., 2021): adapt only the body; the head stays frozen.

The mirror image of ANIL: the inner loop updates every parameter outside the
head (`algorithm.head`, or the last top-level submodule the model applies),
and the head is learned only by the outer loop, so adaptation has to move
the features rather than the decision boundary. Test-time adaptation: the
inner optimizer (`inner.optimizer` at `inner.lr`) on the body.

Config: as MAML (`inner.*`) plus `algorithm.head`. A model with no body (a
single layer) is a ConfigError.
"""
import dataclasses

from metajax.algorithms import _partition
from metajax.algorithms.base import Algorithm
from metajax.settings import ConfigError


@dataclasses.dataclass(frozen=True)
class BoilConfig(_partition.HeadConfig):
  """BOIL's `algorithm` section."""
  NAME = "boil"


def partition_fn(config, problem):
  """Adapt every leaf outside the head."""
  head = _partition.find_head(config, problem)
  return _partition.head_partition(head, adapt_head=False)


def check(config, problem):
  if getattr(config.model, "hidden_sizes", None) == ():
    raise ConfigError("config field 'model.hidden_sizes': boil adapts the "
                      "body, and an MLP with no hidden layers has none (only "
                      "the head)")
  _partition.check_partition(config, problem, partition_fn(config, problem),
                             "boil")


def make_meta_grad(config, problem):
  return _partition.partial_meta_grad(
      config, problem, partition_fn(config, problem), "boil")


def eval_adaptation(config, problem, meta_params):
  return _partition.partial_eval_adaptation(
      config, problem, meta_params, partition_fn(config, problem))


ALGORITHM = Algorithm(name="boil", family="optimization",
                      config_class=BoilConfig, make_meta_grad=make_meta_grad,
                      check=check, eval_adaptation=eval_adaptation)
