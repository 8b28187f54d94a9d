"""The MAML Conv4 for few-shot image classification (Omniglot 28x28x1).

Four blocks of [3x3 conv (no bias), batch norm, activation, 2x2 max-pool],
then a linear head on the flattened features (Vinyals et al. 2016; Finn et al.
2017 with `--max_pool`). `strided=True` is the variant Finn et al. used for
Omniglot in the MAML paper (cbfinn/maml `utils.conv_block` / `forward_conv`):
stride-2 'SAME' convs and no max-pool, the final 2x2x64 features mean-pooled.

Batch norm always uses the statistics of the batch it is given (as MAML does in
both loops) with a learnable scale and bias and no running averages, so the
params pytree is the model's only state:

  model = Conv4(num_classes=5)
  params = model.init(key, x_Bx28x28x1)
  logits_BxK = model.apply(params, x_Bx28x28x1)

`x` is ONE task's batch; vmap `apply` over tasks. Three fields choose
between formulations of the same mathematics (same values and derivatives),
explicitly: the model never asks which backend it runs on. The defaults are
the portable ones (`metajax.backend.PORTABLE`); `metajax.backend.for_backend`
gives those for a backend (`CPU`: conv='fast', fold_norm=True,
max_pool='argmax'):

  conv       'im2col' (`conv_ops.conv_im2col`: slices and batched matmuls
             under vmap, the faster on GPUs), 'fast' (`conv_ops.conv3x3`:
             custom primitives that keep per-task weight gradients under
             vmap on XLA:CPU's fast kernels), 'reference'
             (`lax.conv_general_dilated`), or any function
             `(x_NxHxWxC, w_3x3xCxD, stride) -> y`.
  fold_norm  fold the first block's batch norm into its conv
             (`ConvBlock._folded`).
  max_pool   'pairwise' or 'argmax': how the max-pool picks its tangent
             (`signed_max_pool_2x2`).
"""
from typing import Callable, Union

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from metajax.models.kernels import conv_ops

# Monotone non-decreasing activations: with these, max-pooling commutes with
# the (per-channel affine) batch norm and the activation, see `ConvBlock`.
MONOTONE = (jax.nn.relu, jax.nn.relu6, jax.nn.leaky_relu, jax.nn.elu,
            jax.nn.celu, jax.nn.selu, jax.nn.sigmoid, jax.nn.softplus,
            jax.nn.hard_tanh, jnp.tanh)
# Conv4's `max_pool` values: 'argmax' is `by_argmax=True` of the pools.
MAX_POOLS = ('argmax', 'pairwise')


def max_pool_2x2(x_NxHxWxC, by_argmax=False):
  """2x2 max-pool, stride 2, 'VALID' (odd trailing rows/columns dropped).

  `by_argmax`: the tangent's formulation, see `signed_max_pool_2x2`.
  """
  return signed_max_pool_2x2(x_NxHxWxC, jnp.ones((), x_NxHxWxC.dtype),
                             by_argmax=by_argmax)


def signed_max_pool_2x2(x_NxHxWxC, sign_C, by_argmax=False):
  """max-pool of `x * sign` (sign +-1 per channel, not differentiated).

  Each pooled value is the largest of its window's four, and its derivative
  that of the window's first maximal element (reduce_window's rule; its own
  select_and_scatter gradient is slow on XLA:CPU). Two formulations, the
  same values and derivatives:
  - `by_argmax=False` (the portable default): max/min over each window and
    the tangent picked by pairwise comparisons, all plain elementwise work
    that GPUs fuse.
  - `by_argmax=True` (the faster on XLA:CPU, `metajax.backend.CPU`): the
    element's index is the argmax output of the variadic reduction that
    gives the value (`conv_ops.first_max`), so XLA computes it once, where
    XLA:CPU recomputed the pairwise comparisons inside each full-resolution
    use of the tangent (benchmarks/NOTES_conv.md).
  Either way exactly one element of each window is selected, even where XLA
  would round a recomputed primal differently.
  """
  if not isinstance(by_argmax, (bool, np.bool_)):
    raise ValueError(f'signed_max_pool_2x2: by_argmax must be True or False, '
                     f'got {by_argmax!r}')
  sign_C = lax.stop_gradient(sign_C)
  if by_argmax:
    return _signed_max_pool(x_NxHxWxC, sign_C)[0]
  return _signed_max_pool_pairwise(x_NxHxWxC, sign_C)


@jax.custom_jvp
def _signed_max_pool(x_NxHxWxC, sign_C):
  """(pooled `x * sign`, index of each window's first maximal element)."""
  x_w = conv_ops.windows_2x2(x_NxHxWxC * _per_channel(sign_C))
  return conv_ops.first_max(
      [x_w[:, :, i, :, j] for i in (0, 1) for j in (0, 1)])


@_signed_max_pool.defjvp
def _signed_max_pool_jvp(primals, tangents):
  x, sign = primals
  pooled, index = _signed_max_pool(x, sign)
  t_pooled = conv_ops.at_window_index(tangents[0], index)
  return (pooled, index), (t_pooled * _per_channel(sign),
                           np.zeros(index.shape, jax.dtypes.float0))


@jax.custom_jvp
def _signed_max_pool_pairwise(x_NxHxWxC, sign_C):
  """Pooled `x * sign`, read from x directly (max or -min per channel)."""
  x_w = conv_ops.windows_2x2(x_NxHxWxC)
  return jnp.where(_per_channel(sign_C) > 0, x_w.max(axis=(2, 4)),
                   -x_w.min(axis=(2, 4)))


@_signed_max_pool_pairwise.defjvp
def _signed_max_pool_pairwise_jvp(primals, tangents):
  # The tangent of the first maximal element of each window of x * sign.
  x, sign = primals
  x_w = conv_ops.windows_2x2(x * _per_channel(sign))
  t_w = conv_ops.windows_2x2(tangents[0])
  x00, x01, x10, x11 = (x_w[:, :, i, :, j] for i in (0, 1) for j in (0, 1))
  t00, t01, t10, t11 = (t_w[:, :, i, :, j] for i in (0, 1) for j in (0, 1))
  take00 = (x00 >= x01) & (x00 >= x10) & (x00 >= x11)
  take01 = (x01 >= x10) & (x01 >= x11)
  t_out = jnp.where(take00, t00,
                    jnp.where(take01, t01, jnp.where(x10 >= x11, t10, t11)))
  return (_signed_max_pool_pairwise(x, sign), t_out * _per_channel(sign))


def _per_channel(v_C):
  return v_C.reshape(1, 1, 1, -1)


def _check_max_pool(module, value):
  if not (isinstance(value, str) and value in MAX_POOLS):
    raise ValueError(f"{module} field 'max_pool': expected one of "
                     f'{list(MAX_POOLS)}, got {value!r}')


def batch_moments(y_NxHxWxC):
  """Per-channel mean and (biased) variance over the batch and positions.

  One pass, var = E[y^2] - E[y]^2 (clamped at 0), like flax's BatchNorm with
  `use_fast_variance=True`: both sums fuse into XLA's reductions without a
  stored `y - mean` (a two-pass or shifted variance made XLA:CPU write one
  more full-resolution tensor; benchmarks/NOTES_conv.md). The price is f32
  cancellation when |mean| >> std: relative error ~1e-7 * (mean/std)^2.
  """
  mean_C = jnp.mean(y_NxHxWxC, axis=(0, 1, 2))
  mean_sq_C = jnp.mean(jnp.square(y_NxHxWxC), axis=(0, 1, 2))
  return mean_C, jnp.maximum(mean_sq_C - jnp.square(mean_C), 0.)


class ConvBlock(nn.Module):
  """conv -> batch norm (batch statistics) -> activation [-> 2x2 max-pool].

  `conv`: a conv function `(x, w, stride) -> y` (`conv_ops`). `fold_norm`:
  for inputs with few channels (9C <= width, a first layer on grey images)
  fold the batch norm into the conv (see `_folded`). `max_pool`: the pools'
  tangent formulation, 'pairwise' or 'argmax' (`signed_max_pool_2x2`).
  Defaults: the portable formulations, as in `Conv4`.
  """
  width: int
  stride: int = 1
  pool: bool = True
  pool_first: bool = False
  activation: Callable = nn.relu
  conv: Callable = conv_ops.conv_im2col
  epsilon: float = 1e-5
  fold_norm: bool = False
  max_pool: str = 'pairwise'

  def _pool(self, y_NxHxWxD):
    return max_pool_2x2(y_NxHxWxD, by_argmax=self.max_pool == 'argmax')

  @nn.compact
  def __call__(self, x_NxHxWxC):
    _check_max_pool('ConvBlock', self.max_pool)
    kernel = self.param('kernel', nn.initializers.glorot_uniform(),
                        (3, 3, x_NxHxWxC.shape[-1], self.width))
    scale = self.param('scale', nn.initializers.ones, (self.width,))
    bias = self.param('bias', nn.initializers.zeros, (self.width,))
    x_NxHxWxC, kernel, scale, bias = nn.dtypes.promote_dtype(
        x_NxHxWxC, kernel, scale, bias)
    if self.fold_norm and 9 * x_NxHxWxC.shape[-1] <= self.width:
      return self._folded(x_NxHxWxC, kernel, scale, bias)
    y_NxHxWxD = self.conv(x_NxHxWxC, kernel, self.stride)
    mean_D, var_D = batch_moments(y_NxHxWxD)
    mul_D = scale * lax.rsqrt(var_D + self.epsilon)
    mul, add = _per_channel(mul_D), _per_channel(bias - mean_D * mul_D)
    if not self.pool:
      return self.activation(y_NxHxWxD * mul + add)
    if not self.pool_first:
      return self._pool(self.activation(y_NxHxWxD * mul + add))
    # max(act(a*y + b)) = act(a*max(y) + b) for a >= 0 and monotone act, and
    # = act(a*min(y) + b) for a < 0: pool at full resolution first and do the
    # rest on 4x fewer values. Identical values; derivatives differ only on
    # ties. Batch statistics still come from the full-resolution y.
    sign = lax.stop_gradient(jnp.where(mul >= 0, 1, -1).astype(mul.dtype))
    signed_max_NxhxwxD = signed_max_pool_2x2(
        y_NxHxWxD, sign.reshape(-1), by_argmax=self.max_pool == 'argmax')
    return self.activation(signed_max_NxhxwxD * (sign * mul) + add)

  def _folded(self, x_NxHxWxC, kernel, scale, bias):
    """The same block with batch norm folded into the conv's weights.

    For inputs with few channels (9C <= D, a first layer) the batch
    statistics come from the input patches (`conv_ops.conv_output_moments`),
    so the block is conv(x, kernel * mul) + add followed by the activation
    and the pool: no reductions over the full-resolution output, and its
    gradient reaches the parameters through the conv's weight gradient and
    one sum. For monotone activations the pool goes first, before the
    offset too (max(act(u + b)) = act(max(u) + b), also in floating point;
    the folded multiplier's sign is in the weights already), and for stride
    1 the pooled conv is `conv_ops.max_pooled_conv3x3`, so the forward pass
    never forms the full-resolution output (its derivative is the conv's).
    """
    mean_D, var_D = conv_ops.conv_output_moments(x_NxHxWxC, kernel,
                                                 self.stride)
    mul_D = scale * lax.rsqrt(var_D + self.epsilon)
    folded_kernel = kernel * _per_channel(mul_D)
    add = _per_channel(bias - mean_D * mul_D)
    if self.pool and any(self.activation is f for f in MONOTONE):
      if self.stride == 1:
        pooled = conv_ops.max_pooled_conv3x3(x_NxHxWxC, folded_kernel,
                                             self.conv)
      else:
        pooled = self._pool(self.conv(x_NxHxWxC, folded_kernel,
                                      self.stride))
      return self.activation(pooled + add)
    y = self.conv(x_NxHxWxC, folded_kernel, self.stride)
    if not self.pool:
      return self.activation(y + add)
    return self._pool(self.activation(y + add))


class Conv4(nn.Module):
  """The MAML Conv4 classifier; see the module docstring.

  Attributes:
    num_classes: number of logits (N of the N-way task).
    width: filters per conv (64 for Omniglot, 32 for mini-ImageNet in MAML).
    num_blocks: number of conv blocks.
    strided: Finn's Omniglot variant (stride-2 convs, no max-pool, spatial
      mean of the last features) instead of max-pooling and flattening.
    activation: elementwise nonlinearity.
    conv: 'im2col' (conv_ops.conv_im2col, the portable default), 'fast'
      (conv_ops.conv3x3, the faster on XLA:CPU), 'reference'
      (lax.conv_general_dilated), or a function
      `(x_NxHxWxC, w_3x3xCxD, stride) -> y_NxH'xW'xD` (`conv_ops.get_conv`).
    pool_before_norm: max-pool before batch norm and activation (the same
      function for the monotone activations in `MONOTONE`, 4x fewer values
      to normalise; no faster on XLA:CPU in the end, see NOTES_conv.md).
    epsilon: batch-norm epsilon added to the variance.
    fold_norm: fold the batch norm of blocks whose input has few channels
      (9C <= width: the first block on grey images) into their conv, the
      statistics taken from the input patches (`ConvBlock._folded`). The
      same function; faster on XLA:CPU, slower on a GPU
      (benchmarks/NOTES_conv.md), so off by default.
    max_pool: how the 2x2 max-pools pick their tangent, the same values and
      derivatives either way (`signed_max_pool_2x2`): 'pairwise'
      (elementwise comparisons, the portable default) or 'argmax' (the index
      from the pool's reduction, the faster on XLA:CPU).

  `metajax.backend.for_backend()` gives the conv, fold_norm and max_pool of
  a backend; the defaults are `metajax.backend.PORTABLE`'s.
  """
  num_classes: int
  width: int = 64
  num_blocks: int = 4
  strided: bool = False
  activation: Callable = nn.relu
  conv: Union[str, Callable] = 'im2col'
  pool_before_norm: bool = False
  epsilon: float = 1e-5
  fold_norm: bool = False
  max_pool: str = 'pairwise'

  @nn.compact
  def __call__(self, x_BxHxWxC):
    if x_BxHxWxC.ndim != 4:
      raise ValueError(f'Conv4 takes one task batch [B, H, W, C], got shape '
                       f'{x_BxHxWxC.shape}; vmap over tasks.')
    if self.pool_before_norm and not any(
        self.activation is f for f in MONOTONE):
      raise ValueError('pool_before_norm needs a monotone non-decreasing '
                       f'activation from conv4.MONOTONE, got {self.activation}')
    if not isinstance(self.fold_norm, (bool, np.bool_)):
      raise ValueError("Conv4 field 'fold_norm': expected True or False, "
                       f'got {self.fold_norm!r}')
    _check_max_pool('Conv4', self.max_pool)
    try:
      conv = conv_ops.get_conv(self.conv)
    except ValueError:
      raise ValueError(f"Conv4 field 'conv': expected one of "
                       f'{list(conv_ops.NAMES)} or a function '
                       f'(x, w, stride) -> y, got {self.conv!r}') from None
    x = x_BxHxWxC
    for i in range(self.num_blocks):
      x = ConvBlock(self.width, stride=2 if self.strided else 1,
                    pool=not self.strided,
                    pool_first=self.pool_before_norm,
                    activation=self.activation,
                    conv=conv, epsilon=self.epsilon,
                    fold_norm=bool(self.fold_norm), max_pool=self.max_pool,
                    name=f'block{i}')(x)
    if self.strided:
      features_BxF = jnp.mean(x, axis=(1, 2))
    else:
      features_BxF = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes, name='head')(features_BxF)
