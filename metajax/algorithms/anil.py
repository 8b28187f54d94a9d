"""ANIL (Raghu et al., 2020): adapt only the head in the inner loop.

The body (every parameter outside the head) is frozen during adaptation and
learned only by the outer loop; its meta-gradient flows through the head's
inner updates and the query loss. The head is `algorithm.head`, or the last
top-level submodule the model applies (the MLP's last `Dense_n`, the
Conv4's final Dense). Inner steps are on the head only, so second-order
ANIL is much cheaper than MAML. Test-time adaptation: the inner optimizer
(`inner.optimizer` at `inner.lr`) on the head.

Config: as MAML (`inner.*`) plus `algorithm.head`.
"""
import dataclasses

from metajax.algorithms import _partition
from metajax.algorithms.base import Algorithm


@dataclasses.dataclass(frozen=True)
class AnilConfig(_partition.HeadConfig):
  """ANIL's `algorithm` section."""
  NAME = "anil"


def partition_fn(config, problem):
  """Adapt the leaves of the head only."""
  head = _partition.find_head(config, problem)
  return _partition.head_partition(head, adapt_head=True)


def make_meta_grad(config, problem):
  return _partition.partial_meta_grad(
      config, problem, partition_fn(config, problem), "anil")


def eval_adaptation(config, problem, meta_params):
  return _partition.partial_eval_adaptation(
      config, problem, meta_params, partition_fn(config, problem))


ALGORITHM = Algorithm(name="anil", family="optimization",
                      config_class=AnilConfig, make_meta_grad=make_meta_grad,
                      eval_adaptation=eval_adaptation)
