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

Options of the mean encoder that let an untrained model equal the untrained
nearest-mean baseline (idf-weighted mean, cosine), so meta-training starts
from it rather than from below it:
  `word_weights`: a weighted mean, weights per id (e.g. idf, zero for words
    without a vector), optionally scaled by learned factors `exp(delta)`
    starting at 1 (submodule `weights`);
  `residual`: the dense layers as a branch `h + W2 act(W1 h)` whose output
    layer starts at zero, so the encoder starts as the identity;
  `norm_scale`: the embedding L2-normalised and multiplied by a learned
    scale starting at this value (submodule `norm`): distances and dot
    products then rank as the cosine does, the scale sets the temperature.
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


class WordWeights(nn.Module):
  """Weights of the ids `(B, L)`: `weights[id]`, times `exp(delta[id])` with
  a learned `delta` (zero at init) when `learned`; padding weighs 0."""
  weights: FrozenTable
  learned: bool = False

  @nn.compact
  def __call__(self, ids_BxL):
    weight_V = jnp.asarray(self.weights.array)
    w_BxL = jnp.take(weight_V, ids_BxL, axis=0)
    if self.learned:
      delta_V = self.param("delta", nn.initializers.zeros, weight_V.shape)
      w_BxL = w_BxL * jnp.exp(jnp.take(delta_V, ids_BxL, axis=0))
    return w_BxL * (ids_BxL != 0)


class ScaledNorm(nn.Module):
  """`scale * h / |h|` with a learned `log_scale` starting at `log(init)`."""
  init: float = 1.0

  @nn.compact
  def __call__(self, h_BxF):
    log_scale = self.param("log_scale", nn.initializers.constant(
        np.log(self.init)), ())
    norm_Bx1 = jnp.sqrt(jnp.sum(h_BxF * h_BxF, -1, keepdims=True) + 1e-12)
    return jnp.exp(log_scale) * h_BxF / norm_Bx1


class TextClassifier(nn.Module):
  """Embedding, encoder, then a linear `head` with `num_classes` outputs."""
  num_classes: int
  embed: Embed
  encoder: str = "cnn"
  filter_sizes: Sequence[int] = (3, 4, 5)
  num_filters: int = 50
  hidden_sizes: Sequence[int] = ()
  activation: str = "relu"
  word_weights: Optional[FrozenTable] = None
  learn_weights: bool = False
  residual: bool = False
  norm_scale: float = 0.0

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
    elif self.encoder == "mean" and self.word_weights is not None:
      w_BxL = WordWeights(self.word_weights, self.learn_weights,
                          name="weights")(ids_BxL)
      h_BxF = jnp.einsum("bl,bld->bd", w_BxL, x_BxLxD) / jnp.maximum(
          jnp.sum(w_BxL, axis=1, keepdims=True), 1e-6)
    elif self.encoder == "mean":
      count_Bx1 = jnp.maximum(jnp.sum(mask_BxL, axis=1, keepdims=True), 1.0)
      h_BxF = jnp.sum(x_BxLxD, axis=1) / count_Bx1
    else:
      raise ValueError(f"TextClassifier field 'encoder': expected 'cnn' or "
                       f"'mean', got {self.encoder!r}")
    act = get_activation(self.activation)
    branch_BxF = h_BxF
    for i, width in enumerate(self.hidden_sizes):
      branch_BxF = act(nn.Dense(width, name=f"hidden_{i}")(branch_BxF))
    if self.residual:
      h_BxF = h_BxF + nn.Dense(h_BxF.shape[-1], name="residual_out",
                               kernel_init=nn.initializers.zeros)(branch_BxF)
    else:
      h_BxF = branch_BxF
    if self.norm_scale:
      h_BxF = ScaledNorm(self.norm_scale, name="norm")(h_BxF)
    return nn.Dense(self.num_classes, name="head")(h_BxF)
