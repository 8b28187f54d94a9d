"""The `model` config section: which network a task builds, and its size.

Tasks call `build(model_config, num_outputs, formulations)`; the
formulations (`metajax.backend`) pick among equal implementations of the
same layers.
"""
import dataclasses

from metajax.backend import Formulations
from metajax.models.mlp import ACTIVATIONS, MLP
from metajax.settings import (
    ConfigError, Section, non_negative, non_negative_ints, positive_int,
    setting)


@dataclasses.dataclass(frozen=True)
class MLPConfig(Section):
  """A multi-layer perceptron (`metajax.models.MLP`)."""
  NAME = "mlp"
  hidden_sizes: tuple[int, ...] = setting((40, 40), "hidden layer widths",
                                          check=non_negative_ints)
  activation: str = setting("relu", "hidden activation",
                            choices=tuple(sorted(ACTIVATIONS)))
  init_stddev: float = setting(0.0, "> 0: truncated-normal weights of this "
                               "scale (MAML's code: 0.01); 0: Flax's default",
                               check=non_negative)


@dataclasses.dataclass(frozen=True)
class Conv4Config(Section):
  """The MAML Conv4 (`metajax.models.conv4.Conv4`)."""
  NAME = "conv4"
  strided: bool = setting(False, "Finn's Omniglot variant: stride-2 convs, "
                          "no max-pool, mean of the last features")
  width: int = setting(64, "filters per conv", check=positive_int)


CONFIGS = {cls.NAME: cls for cls in (MLPConfig, Conv4Config)}


def build(model_config: Section, num_outputs: int,
          formulations: Formulations):
  """The Flax module `model_config` describes, with `num_outputs` outputs."""
  if isinstance(model_config, MLPConfig):
    return MLP(hidden_sizes=model_config.hidden_sizes,
               output_size=num_outputs, activation=model_config.activation,
               init_stddev=model_config.init_stddev or None,
               dense=formulations.dense)
  if isinstance(model_config, Conv4Config):
    from metajax.models.conv4 import Conv4  # pylint: disable=g-import-not-at-top
    return Conv4(num_classes=num_outputs, width=model_config.width,
                 strided=model_config.strided, conv=formulations.conv,
                 fold_norm=formulations.fold_norm,
                 max_pool=formulations.max_pool)
  raise ConfigError(f"config field 'model': unknown model {model_config!r}")


def require(model_config: Section, allowed: tuple, task: str):
  """ConfigError unless the model is one of the `allowed` kinds."""
  if model_config.NAME not in allowed:
    raise ConfigError(f"config field 'model': task {task!r} needs one of "
                      f"{list(allowed)}, got {model_config.NAME!r}")
