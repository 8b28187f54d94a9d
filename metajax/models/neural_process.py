"""Conditional Neural Processes (Garnelo et al. 2018) and their attentive
variant (Kim et al. 2019), as Flax modules for ONE task.

A neural process reads a context set of `(x_i, y_i)` pairs and predicts, for
each target input `x*_t`, a distribution over its output:

  r_i  = encoder([x_i, y_i])                      one code per pair
  r*_t = aggregate(x*_t, {x_i}, {r_i}, mask)      permutation invariant
  out  = decoder([r*_t, x*_t])                    Gaussian or categorical

The aggregation is the masked mean of the `r_i` (CNP: the same code for
every target), or multi-head cross-attention with target inputs as queries,
context inputs as keys and the `r_i` as values (the ANP's deterministic
path). For classification the CNP instead takes the mean of each class's
codes (`y` one-hot picks the class; the codes read x alone) and one decoder
scores every class's mean against the target: logit_tc = decoder([r_c,
x*_t]), so relabelling the classes permutes the logits. `mask_S` marks
which context rows are real (1) or padding (0), so one compiled program
serves any number of context points up to S.

  model = NeuralProcess(decoder=GaussianDecoder(sizes=(128, 128), y_dim=1))
  params = model.init(key, x_SxX, y_SxY, mask_S, x_TxX)
  mu_TxY, sigma_TxY = model.apply(params, x_SxX, y_SxY, mask_S, x_TxX)
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

MIN_SIGMA = 0.1  # sigma = 0.1 + 0.9 softplus(raw): Garnelo et al.'s floor


class MLPStack(nn.Module):
  """Dense layers of `sizes`, ReLU between them, the last one linear."""
  sizes: Sequence[int]

  @nn.compact
  def __call__(self, h):
    for i, width in enumerate(self.sizes):
      h = nn.Dense(width, name=f"dense{i}")(h)
      if i < len(self.sizes) - 1:
        h = nn.relu(h)
    return h


class Encoder(nn.Module):
  """`r_i = MLP([x_i, y_i])`, one code per context pair (`MLP(x_i)` when
  `y_SxY` is None)."""
  sizes: Sequence[int] = (128, 128, 128, 128)

  @nn.compact
  def __call__(self, x_SxX, y_SxY=None):
    pair_SxF = x_SxX if y_SxY is None else jnp.concatenate([x_SxX, y_SxY],
                                                           axis=-1)
    return MLPStack(self.sizes, name="mlp")(pair_SxF)


def _zero_padding(r_SxR, mask_S):
  """Padded rows set to exactly zero, whatever they held."""
  return jnp.where(mask_S[:, None] > 0, r_SxR, jnp.zeros_like(r_SxR))


def masked_mean(r_SxR, mask_S):
  """Mean of the rows of `r_SxR` where `mask_S` is 1."""
  mask_S = mask_S.astype(r_SxR.dtype)
  total_R = jnp.sum(_zero_padding(r_SxR, mask_S), axis=0)
  return total_R / jnp.maximum(jnp.sum(mask_S), 1.0)


def class_means(r_SxR, y_SxN, mask_S):
  """Mean of each class's real codes (classes one-hot in `y_SxN`), `(N, R)`."""
  weights_SxN = y_SxN.astype(r_SxR.dtype) * mask_S.astype(r_SxR.dtype)[:, None]
  totals_NxR = weights_SxN.T @ _zero_padding(r_SxR, mask_S)
  return totals_NxR / jnp.maximum(jnp.sum(weights_SxN, axis=0), 1.0)[:, None]


class CrossAttentionAggregator(nn.Module):
  """The ANP's deterministic path: multi-head dot-product attention.

  Queries are the target inputs and keys the context inputs, both through
  one shared MLP (`key_sizes`, Kim et al.'s "mlp" representation); values
  are the r_i. Each head projects queries, keys and values to R / heads
  dimensions, attends with softmax(q k / sqrt(d)) over the real context
  rows, and the heads are concatenated and projected back to R.
  """
  num_heads: int = 8
  key_sizes: Sequence[int] = (128, 128)

  @nn.compact
  def __call__(self, x_target_TxX, x_context_SxX, r_SxR, mask_S):
    width = r_SxR.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"CrossAttentionAggregator: the representation width "
                       f"{width} is not a multiple of num_heads="
                       f"{self.num_heads}")
    head_size = width // self.num_heads
    embed = MLPStack(self.key_sizes, name="key_mlp")  # shared: queries, keys
    project = lambda name: nn.DenseGeneral((self.num_heads, head_size),
                                           use_bias=False, name=name)
    q_TxHxE = project("query")(embed(x_target_TxX))
    k_SxHxE = project("key")(embed(x_context_SxX))
    v_SxHxE = project("value")(_zero_padding(r_SxR, mask_S))
    logits_HxTxS = jnp.einsum("the,she->hts", q_TxHxE, k_SxHxE) / math.sqrt(
        head_size)
    real_1x1xS = (mask_S > 0)[None, None, :]
    logits_HxTxS = jnp.where(real_1x1xS, logits_HxTxS, -jnp.inf)
    weights_HxTxS = jax.nn.softmax(logits_HxTxS, axis=-1)
    read_TxHxE = jnp.einsum("hts,she->the", weights_HxTxS, v_SxHxE)
    return nn.DenseGeneral(width, axis=(-2, -1), name="out")(read_TxHxE)


def gaussian_from(raw_TxY2):
  """`(mu, sigma)` from the decoder's raw output: the first half is the
  mean, sigma = 0.1 + 0.9 softplus(second half), so sigma >= 0.1."""
  mu_TxY, raw_sigma_TxY = jnp.split(raw_TxY2, 2, axis=-1)
  return mu_TxY, MIN_SIGMA + (1.0 - MIN_SIGMA) * jax.nn.softplus(raw_sigma_TxY)


def gaussian_nll(mu_TxY, sigma_TxY, y_TxY):
  """Negative log-likelihood of `y` under N(mu, sigma^2), summed over the
  output dimensions and averaged over the targets."""
  z_TxY = (y_TxY - mu_TxY) / sigma_TxY
  per_dim = 0.5 * jnp.square(z_TxY) + jnp.log(sigma_TxY) + 0.5 * math.log(
      2.0 * math.pi)
  return jnp.mean(jnp.sum(per_dim, axis=-1))


class GaussianDecoder(nn.Module):
  """`[r*_t, x*_t] -> (mu_t, sigma_t)`, an MLP with a 2Y-wide output."""
  sizes: Sequence[int] = (128, 128)
  y_dim: int = 1

  @nn.compact
  def __call__(self, r_TxR, x_target_TxX):
    raw_TxY2 = MLPStack(tuple(self.sizes) + (2 * self.y_dim,), name="mlp")(
        jnp.concatenate([r_TxR, x_target_TxX], axis=-1))
    return gaussian_from(raw_TxY2)


class CategoricalDecoder(nn.Module):
  """`[r*_t, x*_t] -> logits_t` over `num_classes` classes."""
  sizes: Sequence[int] = (128, 128)
  num_classes: int = 5

  @nn.compact
  def __call__(self, r_TxR, x_target_TxX):
    return MLPStack(tuple(self.sizes) + (self.num_classes,), name="mlp")(
        jnp.concatenate([r_TxR, x_target_TxX], axis=-1))


class ClassScoreDecoder(nn.Module):
  """`logit_tc = MLP([r_c, x*_t])`: one scorer for every class's code, so
  relabelling the classes permutes the logits."""
  sizes: Sequence[int] = (128, 128)

  @nn.compact
  def __call__(self, r_NxR, x_target_TxX):
    (t, x), (n, r) = x_target_TxX.shape, r_NxR.shape
    pairs_TxNxF = jnp.concatenate([
        jnp.broadcast_to(r_NxR[None, :, :], (t, n, r)),
        jnp.broadcast_to(x_target_TxX[:, None, :], (t, n, x))], axis=-1)
    return MLPStack(tuple(self.sizes) + (1,), name="mlp")(pairs_TxNxF)[..., 0]


class NeuralProcess(nn.Module):
  """Encoder, aggregation and decoder of one task (module docstring).

  Attributes:
    decoder: a `GaussianDecoder` (returns `(mu, sigma)`), a
      `CategoricalDecoder` (logits from one code per target) or, with
      `per_class`, a `ClassScoreDecoder` (logits from one code per class).
    encoder_sizes: the encoder MLP's widths; the last is the code's, R.
    num_heads: 0 for a mean; > 0 for the ANP's multi-head cross-attention
      (R must be a multiple of it).
    key_sizes: the ANP's query/key MLP widths.
    per_class: the mean of each class's codes (`y` one-hot picks the
      class, the encoder reads x alone), not of all.
  """
  decoder: nn.Module
  encoder_sizes: Sequence[int] = (128, 128, 128, 128)
  num_heads: int = 0
  key_sizes: Sequence[int] = (128, 128)
  per_class: bool = False

  @nn.compact
  def __call__(self, x_context_SxX, y_context_SxY, mask_S, x_target_TxX):
    # Per class, the label picks the mean a code joins; the code itself
    # reads x alone, so class names stay arbitrary.
    r_SxR = Encoder(self.encoder_sizes, name="encoder")(
        x_context_SxX, None if self.per_class else y_context_SxY)
    if self.num_heads:
      code = CrossAttentionAggregator(self.num_heads, self.key_sizes,
                                      name="attention")(
          x_target_TxX, x_context_SxX, r_SxR, mask_S)
    elif self.per_class:
      code = class_means(r_SxR, y_context_SxY, mask_S)
    else:
      r_R = masked_mean(r_SxR, mask_S)
      code = jnp.broadcast_to(r_R[None, :], (x_target_TxX.shape[0],
                                             r_R.shape[0]))
    return self.decoder(code, x_target_TxX)
