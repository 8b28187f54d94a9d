"""Text classifiers over padded token-id batches (0 is padding).

Inputs are int32 ids `(B, L)`; the mask is `ids != 0`, computed inside,
so a batch padded to any length gives each example the embedding it has
unpadded. Top-level submodules: `embed` (absent when the table is frozen),
the body (`conv_<width>` or `hidden_<i>`) and `head`, the linear classifier
whose input is the text's embedding (what ProtoNets and ANIL use).

Encoders:
  "cnn": Kim's CNN as in Bao et al. 2020: filters of widths 3, 4, 5 (50
    each, 'SAME' padding), ReLU, max over the unpadded positions.
  "mean": the mean of the unpadded token vectors, then optional dense layers.
The table is pretrained vectors, frozen (a constant, no gradient) or
fine-tuned (a parameter initialised from them), or a parameter drawn at
random (hashed character n-grams: no pretrained vectors needed).
"""
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metajax.models.mlp import get_activation


class FrozenTable:
  """A numpy table held by identity, so Flax never compares its values."""

  def __init__(self, array):
    self.array = np.asarray(array, np.float32)


class Embed(nn.Module):
  """Looks up ids in the table and zeroes padding: `(B, L, D)`, mask `(B, L)`.

  Exactly one of `frozen` (a `FrozenTable`) and `num_rows` (a parameter
  `table` initialised from `init_table` or, if None, N(0, init_stddev))."""
  frozen: Optional[FrozenTable] = None
  num_rows: int = 0
  dim: int = 64
  init_table: Optional[FrozenTable] = None
  init_stddev: float = 0.1

  @nn.compact
  def __call__(self, ids_BxL):
    if self.frozen is not None:
      table_VxD = jax.lax.stop_gradient(jnp.asarray(self.frozen.array))
    elif self.init_table is not None:
      table_VxD = self.param("table", lambda key: jnp.asarray(
          self.init_table.array))
    else:
      table_VxD = self.param("table", nn.initializers.normal(
          self.init_stddev), (self.num_rows, self.dim))
    mask_BxL = (ids_BxL != 0).astype(table_VxD.dtype)
    return jnp.take(table_VxD, ids_BxL, axis=0) * mask_BxL[..., None], mask_BxL


class TextClassifier(nn.Module):
  """Embedding, encoder, then a linear `head` with `num_classes` outputs."""
  num_classes: int
  embed: Embed
  encoder: str = "cnn"
  filter_sizes: Sequence[int] = (3, 4, 5)
  num_filters: int = 50
  hidden_sizes: Sequence[int] = ()
  activation: str = "relu"

  @nn.compact
  def __call__(self, ids_BxL):
    x_BxLxD, mask_BxL = self.embed(ids_BxL)
    if self.encoder == "cnn":
      pooled = []
      for width in self.filter_sizes:
        h_BxLxF = nn.relu(nn.Conv(self.num_filters, (width,), padding="SAME",
                                  name=f"conv_{width}")(x_BxLxD))
        # ReLU outputs are >= 0, so zeroing padding leaves the max exact.
        pooled.append(jnp.max(h_BxLxF * mask_BxL[..., None], axis=1))
      h_BxF = jnp.concatenate(pooled, axis=-1)
    elif self.encoder == "mean":
      count_Bx1 = jnp.maximum(jnp.sum(mask_BxL, axis=1, keepdims=True), 1.0)
      h_BxF = jnp.sum(x_BxLxD, axis=1) / count_Bx1
    else:
      raise ValueError(f"TextClassifier field 'encoder': expected 'cnn' or "
                       f"'mean', got {self.encoder!r}")
    act = get_activation(self.activation)
    for i, width in enumerate(self.hidden_sizes):
      h_BxF = act(nn.Dense(width, name=f"hidden_{i}")(h_BxF))
    return nn.Dense(self.num_classes, name="head")(h_BxF)
