"""3x3 'SAME' convolutions that stay fast under `jax.vmap` over tasks.

After an inner SGD step every task has its own conv weights. `jax.vmap` of
`lax.conv_general_dilated` with batched weights becomes a grouped convolution
whose weight gradient takes XLA:CPU's slow path (benchmarks/NOTES_conv.md,
"Why the reference is slow").
`conv3x3` is instead built from two bilinear primitives that carry a leading
task axis T (stride s, Ho = ceil(H / s)):

  conv_p(x_TxNxHxWxC, w_Tx3x3xCxD; s) -> y_TxNxHoxWoxD
  wgrad_p(x_TxNxHxWxC, dy_TxNxHoxWoxD; s) -> dw_Tx3x3xCxD
  tconv_p(dy_TxNxHoxWoxD, w_Tx3x3xCxD; s, H, W) -> dx_TxNxHxWxC  (s > 1)

Their transposes are again these three (for s = 1 the input gradient is
conv_p with the flipped kernel), so every order of forward and reverse
differentiation stays on them, and their batching rules fold a vmapped axis
into T (or into N when the weights are shared). On CPU each is lowered to the
fastest kernel measured for its shape (benchmarks/NOTES_conv.md): XLA's own
convolution per task (lax.map; lhs-dilated for tconv_p; for wgrad_p the
backprop-filter convolution, batch and feature axes swapped) for wide
inputs, and one batched im2col matmul for inputs with few channels.
Elsewhere they lower to what vmap of the reference gives (grouped
convolutions), slower on a GPU than `conv_im2col` (plain slices and batched
matmuls under vmap; benchmarks/NOTES_conv.md). Which one a model runs is an
explicit choice, `get_conv(name)`: 'im2col' is Conv4's portable default and
`metajax.backend.for_backend` gives 'fast' on the CPU backend.
"""
import functools

import jax
from jax import lax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.extend import core as jex_core
from jax.interpreters import ad
from jax.interpreters import batching
from jax.interpreters import mlir
import numpy as np

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_reference(x_NxHxWxC, w_3x3xCxD, stride=1):
  """`lax.conv_general_dilated` with 'SAME' padding (the ground truth)."""
  return lax.conv_general_dilated(x_NxHxWxC, w_3x3xCxD, (stride, stride),
                                  'SAME', dimension_numbers=_DIMS)


def conv3x3(x_NxHxWxC, w_3x3xCxD, stride=1):
  """Equals `conv_reference`; fast under vmap, grad and their compositions."""
  x_NxHxWxC, w_3x3xCxD = jnp.asarray(x_NxHxWxC), jnp.asarray(w_3x3xCxD)
  if x_NxHxWxC.dtype != w_3x3xCxD.dtype or w_3x3xCxD.shape[:2] != (3, 3):
    raise TypeError(f'conv3x3 wants a 3x3 kernel of the input dtype, got '
                    f'{x_NxHxWxC.dtype} input, {w_3x3xCxD.dtype}'
                    f'{w_3x3xCxD.shape} kernel.')
  return conv_p.bind(x_NxHxWxC[None], w_3x3xCxD[None], stride=stride)[0]


def conv_im2col(x_NxHxWxC, w_3x3xCxD, stride=1):
  """Equals `conv_reference`: the 9 strided taps stacked, times the kernel.

  Plain autodiff of slices and one matmul. Under vmap over tasks it becomes
  one batched matmul per conv (and per gradient), which suits GPUs' batched
  GEMMs; on CPU `conv3x3` is faster (benchmarks/NOTES_conv.md).
  """
  cols = input_patches(x_NxHxWxC, stride)
  return jnp.einsum('nhwk,kd->nhwd', cols,
                    w_3x3xCxD.reshape(-1, w_3x3xCxD.shape[-1]))


def input_patches(x_NxHxWxC, stride=1):
  """The 9 taps under each output position, [N, Ho, Wo, 9C] (tap-major)."""
  out_hw = _out_hw((None,) + x_NxHxWxC.shape, stride)
  cols = jnp.stack(_taps(x_NxHxWxC, stride, out_hw), -2)
  return cols.reshape(cols.shape[:3] + (-1,))


def conv_output_moments(x_NxHxWxC, w_3x3xCxD, stride=1):
  """Per-channel mean and biased variance of `conv_reference(x, w, stride)`.

  Over N and the output positions, from the 9C-dimensional input patches p
  without forming the output y = p @ w: mean = E[p] @ w and
  var = w^T Cov[p] w (centered, so no E[y^2] - E[y]^2 cancellation). Cheap
  when 9C is small (a first layer on grey images: 9 against 64 filters).
  """
  cols = input_patches(x_NxHxWxC, stride)
  cols_MxK = cols.reshape(-1, cols.shape[-1])
  w_KxD = w_3x3xCxD.reshape(-1, w_3x3xCxD.shape[-1])
  mean_K = jnp.mean(cols_MxK, axis=0)
  centered = cols_MxK - mean_K[None]
  cov_KxK = centered.T @ centered / cols_MxK.shape[0]
  var_D = jnp.einsum('kd,kl,ld->d', w_KxD, cov_KxK, w_KxD)
  return mean_K @ w_KxD, jnp.maximum(var_D, 0.)


def max_pooled_conv3x3(x_NxHxWxC, w_3x3xCxD, conv=conv3x3):
  """`max_pool_2x2(conv(x, w, 1))` (3x3 'SAME' conv, stride 1; 2x2 windows,
  stride 2, odd trailing rows/columns dropped) without forming the
  full-resolution conv output in the forward pass, for inputs with few
  channels. `conv(x, w, stride)` is any of this module's convs.

  Each pooled value is the largest of its window's four conv outputs, each
  a 9C-term sum over the input; those sums run elementwise, so the forward
  pass reads x and writes only the pooled output (a first layer on grey
  images: 9 multiply-adds per conv output against 64 filters, where the
  conv as a matmul is bound by writing its output). The derivative is the
  conv's (`conv`, at full resolution, and its transposes) at the first
  maximal element of each window, the one `max_pool_2x2`'s derivative
  takes; that element's index is the argmax of a reduction, which XLA
  computes once rather than fusing it into every full-resolution use. So
  first and higher derivatives are the plain composition's.
  """
  x_NxHxWxC, w_3x3xCxD = jnp.asarray(x_NxHxWxC), jnp.asarray(w_3x3xCxD)
  if w_3x3xCxD.shape[:3] != (3, 3, x_NxHxWxC.shape[-1]):
    raise ValueError(f'max_pooled_conv3x3 wants a [3, 3, C, D] kernel with '
                     f'C = {x_NxHxWxC.shape[-1]} (the input channels), got '
                     f'{w_3x3xCxD.shape}.')
  return _max_pooled(conv, x_NxHxWxC, w_3x3xCxD)[0]


def _window_values(x_NxHxWxC, w_3x3xCxD):
  """The conv outputs at the four positions (py, px) of each 2x2 window."""
  _, h, w, c = x_NxHxWxC.shape
  out_h, out_w = h // 2, w // 2
  x_pad = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  values = []
  for py in (0, 1):
    for px in (0, 1):
      total = 0.
      for i in range(3):
        for j in range(3):
          rows = slice(py + i, py + i + 2 * out_h - 1, 2)
          cols = slice(px + j, px + j + 2 * out_w - 1, 2)
          tap = x_pad[:, rows, cols]
          for k in range(c):  # broadcast multiply-adds; no dot to materialise
            total = total + tap[..., k:k + 1] * w_3x3xCxD[i, j, k][
                None, None, None]
      values.append(total)
  return values


def first_max(values):
  """The largest of the four values and the index (0-3) of the first one.

  One reduction over a stacked axis: XLA computes it once, where an
  elementwise maximum would be recomputed inside each of its consumers.
  """
  stacked = jnp.stack(values, -1)
  index = lax.broadcasted_iota(jnp.int32, stacked.shape, stacked.ndim - 1)

  def first_max(a, b):
    (a_value, a_index), (b_value, b_index) = a, b
    take_a = (a_value > b_value) | ((a_value == b_value) & (a_index < b_index))
    return (jnp.where(take_a, a_value, b_value),
            jnp.where(take_a, a_index, b_index))

  init = (jnp.array(-jnp.inf, stacked.dtype), jnp.array(0, jnp.int32))
  return lax.reduce((stacked, index), init, first_max, (stacked.ndim - 1,))


def windows_2x2(y_NxHxWxD):
  """[N, H/2, 2, W/2, 2, D]: y's 2x2 windows (stride 2, odd trailing rows and
  columns dropped); window element (i, j) is `[:, :, i, :, j]`."""
  n, h, w, d = y_NxHxWxD.shape
  y_NxHxWxD = y_NxHxWxD[:, :h // 2 * 2, :w // 2 * 2]
  return y_NxHxWxD.reshape(n, h // 2, 2, w // 2, 2, d)


def at_window_index(y_NxHxWxD, index_NxhxwxD):
  """The element of each 2x2 window of y (`windows_2x2`) at `index`: 0-3,
  row-major, as `first_max` numbers the window's four values."""
  y = windows_2x2(y_NxHxWxD)
  y00, y01, y10, y11 = (y[:, :, i, :, j] for i in (0, 1) for j in (0, 1))
  return jnp.where(index_NxhxwxD == 0, y00, jnp.where(
      index_NxhxwxD == 1, y01, jnp.where(index_NxhxwxD == 2, y10, y11)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _max_pooled(conv, x_NxHxWxC, w_3x3xCxD):
  """(pooled values, index of each window's first maximal element)."""
  return first_max(_window_values(x_NxHxWxC, w_3x3xCxD))


def _max_pooled_jvp(conv, primals, tangents):
  x, w = primals
  tx, tw = tangents
  pooled, index = _max_pooled(conv, x, w)
  index_tangent = np.zeros(index.shape, jax.dtypes.float0)
  terms = [conv(x, tw, 1)] if type(tw) is not SymbolicZero else []
  if type(tx) is not SymbolicZero:
    terms.append(conv(tx, w, 1))
  if not terms:
    return (pooled, index), (jnp.zeros_like(pooled), index_tangent)
  t_pooled = at_window_index(sum(terms[1:], terms[0]), index)
  return (pooled, index), (t_pooled, index_tangent)


_max_pooled.defjvp(_max_pooled_jvp, symbolic_zeros=True)


CONVS = {'fast': conv3x3, 'im2col': conv_im2col, 'reference': conv_reference}


NAMES = tuple(CONVS)  # the names `get_conv` takes


def get_conv(name_or_fn):
  """A conv implementation: a key of CONVS or a function.

  'fast' is `conv3x3` (the faster on XLA:CPU), 'im2col' `conv_im2col` (the
  faster on GPUs; benchmarks/NOTES_conv.md), 'reference'
  `conv_reference`; a function `(x_NxHxWxC, w_3x3xCxD, stride) -> y` is
  returned as it is. ValueError listing the names for anything else.
  """
  fn = CONVS.get(name_or_fn) if isinstance(name_or_fn, str) else name_or_fn
  if not callable(fn):
    raise ValueError(f'unknown conv {name_or_fn!r}; expected one of '
                     f'{list(CONVS)} or a function (x, w, stride) -> y')
  return fn


# ------------------------------------------------------------ 'SAME' geometry
def _offset(size, stride):
  """Input row under output 0's centre: 'SAME' pads (total // 2) in front."""
  pad_total = max((-(-size // stride) - 1) * stride + 3 - size, 0)
  return 1 - pad_total // 2


def _taps(x_NxHxWxC, stride, out_hw):
  """The 9 inputs under kernel tap (i, j) of every output, [N, Ho, Wo, C]."""
  (_, h, w, _), (out_h, out_w) = x_NxHxWxC.shape, out_hw
  x_pad = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  oh, ow = _offset(h, stride), _offset(w, stride)
  return [x_pad[:, oh + i:oh + i + stride * (out_h - 1) + 1:stride,
                ow + j:ow + j + stride * (out_w - 1) + 1:stride]
          for i in range(3) for j in range(3)]


def _tconv_one(dy_NxHoxWoxD, w_3x3xCxD, stride, in_hw):
  """Input gradient of a strided conv: an lhs-dilated conv, flipped kernel."""
  pads = []
  for size, out in zip(in_hw, dy_NxHoxWoxD.shape[1:3]):
    lo = _offset(size, stride)
    pads.append((lo + 1, size - lo - stride * (out - 1)))
  return lax.conv_general_dilated(
      dy_NxHoxWoxD, _flip(w_3x3xCxD[None])[0], (1, 1), pads,
      lhs_dilation=(stride, stride), dimension_numbers=_DIMS)


# ------------------------------------------------------- CPU kernels (T-major)
def _few_channels(c, d):
  return 9 * c <= d  # the im2col patches are no bigger than the output


def _conv_kernel(x_TxNxHxWxC, w_Tx3x3xCxD, stride):
  t, c, d = w_Tx3x3xCxD.shape[0], w_Tx3x3xCxD.shape[3], w_Tx3x3xCxD.shape[4]
  if t == 1:
    return conv_reference(x_TxNxHxWxC[0], w_Tx3x3xCxD[0], stride)[None]
  if _few_channels(c, d):
    out_hw = _out_hw(x_TxNxHxWxC.shape, stride)
    cols = jax.vmap(lambda x: jnp.stack(_taps(x, stride, out_hw), -2))(
        x_TxNxHxWxC)
    return jnp.einsum('tnhwk,tkd->tnhwd', cols.reshape(cols.shape[:4] + (-1,)),
                      w_Tx3x3xCxD.reshape(t, 9 * c, d))
  return lax.map(lambda xw: conv_reference(*xw, stride),
                 (x_TxNxHxWxC, w_Tx3x3xCxD))


def _wgrad_one(x_NxHxWxC, dy_NxHoxWoxD, stride):
  """dw[i, j] = taps(x)[i, j]^T dy, as one convolution (XLA's own kernel).

  dw[i, j, c, d] = sum_{n,h,w} x_pad[n, oh + i + s h, ow + j + s w, c]
  dy[n, h, w, d] is a 'VALID' convolution of the padded input, read as a
  batch of C images with N channels, by dy as an N -> D kernel dilated by
  the stride, which leaves a 3x3 output: the backprop-filter convolution.
  XLA:CPU's Eigen kernel runs it faster than the nine shifted products it
  replaced (1x1-convolution dots in a scan) at every Conv4 shape,
  transposes included (benchmarks/NOTES_conv.md).
  """
  (_, h, w, _), (_, out_h, out_w, _) = x_NxHxWxC.shape, dy_NxHoxWoxD.shape
  x_pad = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  oh, ow = _offset(h, stride), _offset(w, stride)
  x_window = x_pad[:, oh:oh + stride * (out_h - 1) + 3,
                   ow:ow + stride * (out_w - 1) + 3]
  dw_Cx3x3xD = lax.conv_general_dilated(
      jnp.transpose(x_window, (3, 1, 2, 0)),
      jnp.transpose(dy_NxHoxWoxD, (1, 2, 0, 3)), (1, 1), 'VALID',
      rhs_dilation=(stride, stride), dimension_numbers=_DIMS)
  return jnp.transpose(dw_Cx3x3xD, (1, 2, 0, 3))


def _wgrad_kernel(x_TxNxHxWxC, dy_TxNxHoxWoxD, stride):
  t, c = x_TxNxHxWxC.shape[0], x_TxNxHxWxC.shape[-1]
  d = dy_TxNxHoxWoxD.shape[-1]
  if _few_channels(c, d):
    # Patches laid out [T, 9C, M] so that the big dy needs no transpose.
    taps = lambda x: jnp.stack(_taps(x, stride, dy_TxNxHoxWoxD.shape[2:4]))
    cols = jnp.moveaxis(jax.vmap(taps)(x_TxNxHxWxC), -1, 2)
    dw = jnp.einsum('tkm,tmd->tkd', cols.reshape(t, 9 * c, -1),
                    dy_TxNxHoxWoxD.reshape(t, -1, d))
    return dw.reshape(t, 3, 3, c, d)
  if t == 1:
    return _wgrad_one(x_TxNxHxWxC[0], dy_TxNxHoxWoxD[0], stride)[None]
  return lax.map(lambda a: _wgrad_one(*a, stride),
                 (x_TxNxHxWxC, dy_TxNxHoxWoxD))


def _tconv_kernel(dy_TxNxHoxWoxD, w_Tx3x3xCxD, stride, in_hw):
  if w_Tx3x3xCxD.shape[0] == 1:
    return _tconv_one(dy_TxNxHoxWoxD[0], w_Tx3x3xCxD[0], stride, in_hw)[None]
  return lax.map(lambda a: _tconv_one(*a, stride, in_hw),
                 (dy_TxNxHoxWoxD, w_Tx3x3xCxD))


def _tconv_kernel_generic(dy_TxNxHoxWoxD, w_Tx3x3xCxD, stride, in_hw):
  return jax.vmap(lambda dy, w: _tconv_one(dy, w, stride, in_hw))(
      dy_TxNxHoxWoxD, w_Tx3x3xCxD)


def _conv_kernel_generic(x_TxNxHxWxC, w_Tx3x3xCxD, stride):
  return jax.vmap(lambda x, w: conv_reference(x, w, stride))(
      x_TxNxHxWxC, w_Tx3x3xCxD)


def _wgrad_kernel_generic(x_TxNxHxWxC, dy_TxNxHoxWoxD, stride):
  def wgrad_one(x_NxHxWxC, dy_NxHoxWoxD):
    w = jax.ShapeDtypeStruct((3, 3, x_NxHxWxC.shape[-1],
                              dy_NxHoxWoxD.shape[-1]), x_NxHxWxC.dtype)
    conv = lambda w: conv_reference(x_NxHxWxC, w, stride)
    return jax.linear_transpose(conv, w)(dy_NxHoxWoxD)[0]
  return jax.vmap(wgrad_one)(x_TxNxHxWxC, dy_TxNxHoxWoxD)


# ------------------------------------------------------------------ primitives
def _out_hw(x_shape, stride):
  return tuple(-(-size // stride) for size in x_shape[2:4])


conv_p = jex_core.Primitive('metajax_conv3x3')
wgrad_p = jex_core.Primitive('metajax_conv3x3_wgrad')
tconv_p = jex_core.Primitive('metajax_conv3x3_transpose')
for prim, static in ((conv_p, 'stride'), (wgrad_p, 'stride'),
                     (tconv_p, ('stride', 'in_hw'))):
  prim.def_impl(jax.jit(prim.bind, static_argnames=static))
conv_p.def_abstract_eval(lambda x, w, stride: jax.core.ShapedArray(
    x.shape[:2] + _out_hw(x.shape, stride) + w.shape[-1:], x.dtype))
wgrad_p.def_abstract_eval(lambda x, dy, stride: jax.core.ShapedArray(
    (x.shape[0], 3, 3, x.shape[-1], dy.shape[-1]), x.dtype))
tconv_p.def_abstract_eval(lambda dy, w, stride, in_hw: jax.core.ShapedArray(
    dy.shape[:2] + in_hw + w.shape[3:4], dy.dtype))
# Off CPU (GPU, TPU) the primitives lower to exactly what vmap of
# `conv_reference` would give: XLA's own grouped convolutions.
for prim, generic, cpu in ((conv_p, _conv_kernel_generic, _conv_kernel),
                           (wgrad_p, _wgrad_kernel_generic, _wgrad_kernel),
                           (tconv_p, _tconv_kernel_generic, _tconv_kernel)):
  mlir.register_lowering(prim, mlir.lower_fun(generic, False))
  mlir.register_lowering(prim, mlir.lower_fun(cpu, False), platform='cpu')


def _flip(w_Tx3x3xCxD):
  return jnp.swapaxes(w_Tx3x3xCxD[:, ::-1, ::-1], 3, 4)


def _input_grad(dy, w, stride, in_hw):
  if stride == 1:
    return conv_p.bind(dy, _flip(w), stride=1)
  return tconv_p.bind(dy, w, stride=stride, in_hw=tuple(in_hw))


# conv: y = conv(x, w), dx = tconv(dy, w), dw = wgrad(x, dy); wgrad and
# tconv are bilinear too, and their transposes close the set.
ad.defbilinear(
    conv_p,
    lambda ct, x, w, stride: _input_grad(ct, w, stride, x.aval.shape[2:4]),
    lambda ct, x, w, stride: wgrad_p.bind(x, ct, stride=stride))
ad.defbilinear(
    wgrad_p,
    lambda ct, x, dy, stride: _input_grad(dy, ct, stride, x.aval.shape[2:4]),
    lambda ct, x, dy, stride: conv_p.bind(x, ct, stride=stride))
ad.defbilinear(
    tconv_p,
    lambda ct, dy, w, stride, in_hw: conv_p.bind(ct, w, stride=stride),
    lambda ct, dy, w, stride, in_hw: wgrad_p.bind(ct, dy, stride=stride))


# -------------------------------------------------------------------- batching
def _merge_tasks(a, bd):
  a = jnp.moveaxis(a, bd, 0)
  return a.reshape((-1,) + a.shape[2:]), a.shape[:2]


def _into_axis(a, bd, axis):
  """Moves batch axis `bd` next to `axis` and merges the two (batch major)."""
  a = jnp.moveaxis(a, bd, axis)
  return a.reshape(a.shape[:axis] + (-1,) + a.shape[axis + 2:]), a.shape[axis]


def _conv_batch(args, dims, stride):
  (x, w), (bx, bw) = args, dims
  if bx is not None and bw is not None:
    (x, bt), (w, _) = _merge_tasks(x, bx), _merge_tasks(w, bw)
    y = conv_p.bind(x, w, stride=stride)
    return y.reshape(bt + y.shape[1:]), 0
  if bw is None:  # shared weights: the batch joins the images.
    x, b = _into_axis(x, bx, 1)
    y = conv_p.bind(x, w, stride=stride)
    return y.reshape(y.shape[:1] + (b, -1) + y.shape[2:]), 1
  w, b = _into_axis(w, bw, 4)  # shared input: the batch joins the filters.
  y = conv_p.bind(x, w, stride=stride)
  return y.reshape(y.shape[:-1] + (b, -1)), 4


def _wgrad_batch(args, dims, stride):
  (x, dy), (bx, by) = args, dims
  if bx is not None and by is not None:
    (x, bt), (dy, _) = _merge_tasks(x, bx), _merge_tasks(dy, by)
    dw = wgrad_p.bind(x, dy, stride=stride)
    return dw.reshape(bt + dw.shape[1:]), 0
  if by is None:
    x, b = _into_axis(x, bx, 4)
    dw = wgrad_p.bind(x, dy, stride=stride)
    return dw.reshape(dw.shape[:3] + (b, -1) + dw.shape[4:]), 3
  dy, b = _into_axis(dy, by, 4)
  dw = wgrad_p.bind(x, dy, stride=stride)
  return dw.reshape(dw.shape[:4] + (b, -1)), 4


def _tconv_batch(args, dims, stride, in_hw):
  (dy, w), (by, bw) = args, dims
  if bw is None:  # shared weights: the batch joins the images.
    dy, b = _into_axis(dy, by, 1)
    dx = tconv_p.bind(dy, w, stride=stride, in_hw=in_hw)
    return dx.reshape(dx.shape[:1] + (b, -1) + dx.shape[2:]), 1
  size = w.shape[bw]
  dy = dy if by is not None else jnp.broadcast_to(dy, (size,) + dy.shape)
  (dy, bt), (w, _) = _merge_tasks(dy, by or 0), _merge_tasks(w, bw)
  dx = tconv_p.bind(dy, w, stride=stride, in_hw=in_hw)
  return dx.reshape(bt + dx.shape[1:]), 0


batching.primitive_batchers[conv_p] = _conv_batch
batching.primitive_batchers[wgrad_p] = _wgrad_batch
batching.primitive_batchers[tconv_p] = _tconv_batch
