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
    positive_ints, setting)


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


@dataclasses.dataclass(frozen=True)
class TextCNNConfig(Section):
  """Kim's CNN over GloVe word vectors (`metajax.models.text`), as in Bao et
  al. 2020; text tasks only."""
  NAME = "text_cnn"
  INPUT = "words"
  embeddings: str = setting("frozen", "GloVe vectors frozen or fine-tuned",
                            choices=("frozen", "finetune"))
  num_filters: int = setting(50, "filters per width", check=positive_int)
  filter_sizes: tuple[int, ...] = setting((3, 4, 5), "filter widths",
                                          check=positive_ints)


@dataclasses.dataclass(frozen=True)
class PooledTextConfig(Section):
  """The options of the text encoders that average token embeddings: how the
  mean is weighted, and how the dense layers and the output scale start."""
  weighting: str = setting("none", "weights of the mean: none, idf (counted "
                           "on the meta-train split, zero for ids without a "
                           "vector) or idf_learned (idf times learned "
                           "factors starting at 1)",
                           choices=("none", "idf", "idf_learned"))
  residual: bool = setting(False, "hidden layers as a residual branch whose "
                           "output layer starts at zero (the untrained "
                           "encoder is the mean itself)")
  norm_scale: float = setting(0.0, "0: off; else the embedding is L2-"
                              "normalised times a learned scale starting "
                              "here", check=non_negative)


@dataclasses.dataclass(frozen=True)
class TextMeanConfig(PooledTextConfig):
  """The mean of GloVe word vectors, then dense layers; text tasks only."""
  NAME = "text_mean"
  INPUT = "words"
  embeddings: str = setting("frozen", "GloVe vectors frozen or fine-tuned",
                            choices=("frozen", "finetune"))
  hidden_sizes: tuple[int, ...] = setting((256,), "hidden layer widths",
                                          check=non_negative_ints)
  activation: str = setting("relu", "hidden activation",
                            choices=tuple(sorted(ACTIVATIONS)))


@dataclasses.dataclass(frozen=True)
class TextNgramConfig(PooledTextConfig):
  """Hashed character n-grams embedded from scratch, averaged, then dense
  layers: needs no pretrained vectors; text tasks only."""
  NAME = "text_ngram"
  INPUT = "ngrams"
  dim: int = setting(64, "n-gram embedding width", check=positive_int)
  hidden_sizes: tuple[int, ...] = setting((128,), "hidden layer widths",
                                          check=non_negative_ints)
  activation: str = setting("relu", "hidden activation",
                            choices=tuple(sorted(ACTIVATIONS)))


CONFIGS = {cls.NAME: cls for cls in (MLPConfig, Conv4Config, TextCNNConfig,
                                     TextMeanConfig, TextNgramConfig)}
TEXT_CONFIGS = (TextCNNConfig, TextMeanConfig, TextNgramConfig)


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
  if isinstance(model_config, TEXT_CONFIGS):
    raise ConfigError(f"config field 'model': {model_config.NAME!r} is built "
                      "by the text tasks (it needs their vocabulary); use "
                      "task='huffpost' or task='clinc150'")
  raise ConfigError(f"config field 'model': unknown model {model_config!r}")


def build_text(model_config: Section, num_outputs: int, num_rows: int,
               vectors_VxD=None, weights_V=None):
  """A text classifier (`metajax.models.text`) over `num_rows` token ids;
  `vectors_VxD`: the pretrained vectors word models need; `weights_V`: the
  per-id weights a `weighting` other than "none" needs."""
  from metajax.models import text  # pylint: disable=g-import-not-at-top
  mean_options = {}
  if getattr(model_config, "weighting", "none") != "none":
    if weights_V is None:
      raise ConfigError(f"config field 'model.weighting': "
                        f"{model_config.weighting!r} needs per-id weights")
    mean_options = dict(word_weights=text.FrozenTable(weights_V),
                        learn_weights=model_config.weighting == "idf_learned")
  if hasattr(model_config, "residual"):
    mean_options.update(residual=model_config.residual,
                        norm_scale=model_config.norm_scale)
  if isinstance(model_config, TextNgramConfig):
    embed = text.Embed(num_rows=num_rows, dim=model_config.dim)
    return text.TextClassifier(num_classes=num_outputs, embed=embed,
                               encoder="mean",
                               hidden_sizes=model_config.hidden_sizes,
                               activation=model_config.activation,
                               **mean_options)
  if vectors_VxD is None:
    raise ConfigError(f"config field 'model': {model_config.NAME!r} needs "
                      "pretrained word vectors")
  table = text.FrozenTable(vectors_VxD)
  embed = (text.Embed(frozen=table) if model_config.embeddings == "frozen"
           else text.Embed(init_table=table))
  if isinstance(model_config, TextCNNConfig):
    return text.TextClassifier(num_classes=num_outputs, embed=embed,
                               encoder="cnn",
                               filter_sizes=model_config.filter_sizes,
                               num_filters=model_config.num_filters)
  return text.TextClassifier(num_classes=num_outputs, embed=embed,
                             encoder="mean",
                             hidden_sizes=model_config.hidden_sizes,
                             activation=model_config.activation,
                             **mean_options)


def require(model_config: Section, allowed: tuple, task: str):
  """ConfigError unless the model is one of the `allowed` kinds."""
  if model_config.NAME not in allowed:
    raise ConfigError(f"config field 'model': task {task!r} needs one of "
                      f"{list(allowed)}, got {model_config.NAME!r}")
