"""BOIL (Oh et al., 2021): adapt only the body; the head stays frozen.

The mirror image of ANIL: the inner loop updates every parameter outside the
head (`config.head_name`, or the last top-level submodule the model
applies), and the head is learned only by the outer loop, so adaptation has
to move the features rather than the decision boundary. Test-time
adaptation: SGD at `inner_lr` on the body.

Config: as MAML (`inner_steps`, `inner_lr`, `inner_optimizer`,
`first_order`, `remat`) plus `head_name`. A model with no body (a single
layer) is a ConfigError.
"""
from metajax.algorithms import _partition
from metajax.training.config import ConfigError


def check(config):
  if config.model == "mlp" and not config.hidden_sizes:
    raise ConfigError("config field 'hidden_sizes': boil adapts the body, and "
                      "an MLP with no hidden layers has none (only the head)")


def partition_fn(config, problem):
  """Adapt every leaf outside the head."""
  head = _partition.find_head(config, problem)
  return _partition.head_partition(head, adapt_head=False)


def make_meta_grad(config, problem):
  return _partition.partial_meta_grad(
      config, problem, partition_fn(config, problem), "boil")


def eval_adaptation(config, problem, meta_params):
  return _partition.partial_eval_adaptation(
      config, problem, meta_params, partition_fn(config, problem))
