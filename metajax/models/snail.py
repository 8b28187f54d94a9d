"""SNAIL (Mishra, Rohaninejad, Chen and Abbeel, 2018): a causal sequence model.

Two kinds of block, each concatenating new features to its input:

- a temporal-convolution (TC) block: `ceil(log2 max_length)` dense blocks,
  the i-th `concat(x, tanh(conv_f(x)) * sigmoid(conv_g(x)))` with gated
  kernel-2 causal convolutions of dilation 2^i (1, 2, 4, ...), so the last
  position sees the whole sequence (receptive field 2^depth >= max_length).
  The paper's Algorithm 2 counts i from 1 (dilations 2, 4, ...), which
  reaches twice as far as a sequence of max_length needs;
- an attention block: `concat(x, causal softmax attention(x))` with one
  head, keys and queries of `key_size`, values of `value_size`.

The paper's Omniglot network is attention(64, 32), TC(T, 128),
attention(256, 128), TC(T, 128), attention(512, 256) and a 1x1 convolution
(a dense layer per position) to the N class logits: `SNAIL(num_outputs=N,
max_length=T)` with the defaults. Sizes are fields so that a CPU budget can
shrink them.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def check_length(module: str, x_BxTxD, max_length: int) -> None:
  """ValueError unless `x` is `[B, T, D]` with `T <= max_length`."""
  if x_BxTxD.ndim != 3:
    raise ValueError(f"{module} takes sequences [B, T, D], got shape "
                     f"{x_BxTxD.shape}")
  if x_BxTxD.shape[1] > max_length:
    raise ValueError(f"{module} was built for sequences of at most "
                     f"max_length={max_length} steps, got "
                     f"{x_BxTxD.shape[1]}")


def causal_conv1d(x_BxTxC, kernel_KxCxF, bias_F, dilation: int):
  """Dilated causal 1-D convolution, zero-padded on the left.

  `y[t] = bias + sum_i kernel[i] . x[t - (K - 1 - i) * dilation]`, a term
  dropped where its time index is negative: position t never reads a later
  one. One matmul per tap (K is 2 in SNAIL).
  """
  length = x_BxTxC.shape[1]
  taps = kernel_KxCxF.shape[0]
  y_BxTxF = jnp.broadcast_to(bias_F, x_BxTxC.shape[:2] + bias_F.shape)
  for i in range(taps):
    shift = (taps - 1 - i) * dilation
    if shift >= length:
      continue  # this tap reads only the padding
    shifted_BxTxC = jnp.pad(x_BxTxC[:, :length - shift],
                            ((0, 0), (shift, 0), (0, 0)))
    y_BxTxF = y_BxTxF + shifted_BxTxC @ kernel_KxCxF[i]
  return y_BxTxF


def causal_attention(query_BxTxK, key_BxTxK, value_BxTxV):
  """`softmax(Q K^T / sqrt(K) + mask) V`, the mask -inf above the diagonal
  (position t attends to positions 0..t)."""
  length, key_size = query_BxTxK.shape[1], query_BxTxK.shape[2]
  logits_BxTxT = jnp.einsum("btk,bsk->bts", query_BxTxK, key_BxTxK)
  logits_BxTxT = logits_BxTxT / jnp.sqrt(jnp.asarray(key_size,
                                                     logits_BxTxT.dtype))
  allowed_TxT = jnp.tril(jnp.ones((length, length), bool))
  logits_BxTxT = jnp.where(allowed_TxT[None], logits_BxTxT, -jnp.inf)
  weights_BxTxT = jax.nn.softmax(logits_BxTxT, axis=-1)
  return jnp.einsum("bts,bsv->btv", weights_BxTxT, value_BxTxV)


class CausalConv1d(nn.Module):
  """`causal_conv1d` with its own kernel and bias."""
  features: int
  dilation: int
  kernel_size: int = 2

  @nn.compact
  def __call__(self, x_BxTxC):
    kernel = self.param("kernel", nn.initializers.lecun_normal(
        in_axis=(0, 1), out_axis=2),
        (self.kernel_size, x_BxTxC.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return causal_conv1d(x_BxTxC, kernel, bias, self.dilation)


class DenseBlock(nn.Module):
  """`concat(x, tanh(conv_f(x)) * sigmoid(conv_g(x)))`, gated causal convs
  (`conv_f` and `conv_g` as one convolution of twice the filters)."""
  dilation: int
  filters: int

  @nn.compact
  def __call__(self, x_BxTxC):
    fg_BxTx2F = CausalConv1d(2 * self.filters, self.dilation, name="conv")(
        x_BxTxC)
    f_BxTxF, g_BxTxF = jnp.split(fg_BxTx2F, 2, axis=-1)
    return jnp.concatenate(
        [x_BxTxC, jnp.tanh(f_BxTxF) * jax.nn.sigmoid(g_BxTxF)], axis=-1)


def tc_depth(max_length: int) -> int:
  """Dense blocks of a TC block: `ceil(log2 max_length)`."""
  return math.ceil(math.log2(max_length)) if max_length > 1 else 0


class TCBlock(nn.Module):
  """Dense blocks of dilation 1, 2, 4, ..., `tc_depth(max_length)` of them."""
  max_length: int
  filters: int

  @nn.compact
  def __call__(self, x_BxTxC):
    for i in range(tc_depth(self.max_length)):
      x_BxTxC = DenseBlock(2 ** i, self.filters, name=f"dense{i}")(x_BxTxC)
    return x_BxTxC


class AttentionBlock(nn.Module):
  """`concat(x, causal_attention(x W_q, x W_k, x W_v))`, the three
  projections as one dense layer `qkv`."""
  key_size: int
  value_size: int

  @nn.compact
  def __call__(self, x_BxTxC):
    qkv = nn.Dense(2 * self.key_size + self.value_size, name="qkv")(x_BxTxC)
    query, key, value = jnp.split(
        qkv, (self.key_size, 2 * self.key_size), axis=-1)
    return jnp.concatenate([x_BxTxC, causal_attention(query, key, value)],
                           axis=-1)


class SNAIL(nn.Module):
  """Attention and TC blocks interleaved, then a per-position dense layer.

  Attributes:
    num_outputs: outputs per position (N class logits).
    max_length: the longest sequence taken; sets the TC blocks' depth.
    tc_filters: filters of each dense block's convolutions.
    attention_sizes: key size of each attention block (value size: half);
      a TC block sits between consecutive attention blocks.
  """
  num_outputs: int
  max_length: int
  tc_filters: int = 128
  attention_sizes: tuple = (64, 256, 512)

  @nn.compact
  def __call__(self, x_BxTxD):
    check_length("SNAIL", x_BxTxD, self.max_length)
    x = x_BxTxD
    for i, key_size in enumerate(self.attention_sizes):
      if i:
        x = TCBlock(self.max_length, self.tc_filters, name=f"tc{i}")(x)
      x = AttentionBlock(key_size, key_size // 2, name=f"attention{i}")(x)
    return nn.Dense(self.num_outputs, name="output")(x)
