"""Dense-layer products: XLA's own, and one with a CPU-fast reverse-mode rule.

Autodiff's weight gradient of `y = x @ W` is `x^T @ dy`, a contraction over
the rows of `x` (the leading axis of both operands). Under `vmap` over tasks
it is a batched dot that XLA:CPU runs much slower than the same product from
a materialised `x^T` (benchmarks/NOTES_conv.md). `matmul` is `x @ W` with a
custom VJP that takes the weight gradient from `x^T` (behind an optimization
barrier, so XLA keeps the copy). Every product in these rules is again
`matmul` or `weight_grad`, so derivatives of every order contract only the
left operand's last axis: MAML's second-order meta-gradient runs fast
products throughout (README, Meta-step speed).

Same values and derivatives of every reverse-mode order as `lax.dot_general`
(tests/test_dense_ops.py), but reverse mode only: `jax.jvp`, `jax.jacfwd` and
`jax.hessian` raise on it. `metajax.backend.for_backend` therefore picks it
('fast') only on the CPU backend and never with `forward_mode=True`.
"""
from typing import Callable, Union

import jax
from jax import lax


def _dot(a, b, a_axis: int, b_axis: int) -> jax.Array:
  """Contracts axis `a_axis` of `a` with axis `b_axis` of `b` (no batch axes)."""
  return lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((), ())))


@jax.custom_vjp
def weight_grad(x_NxK: jax.Array, ct_NxM: jax.Array) -> jax.Array:
  """`x^T @ ct`, [K, M], computed from a materialised `x^T`."""
  return _dot(lax.optimization_barrier(x_NxK.T), ct_NxM, 1, 0)


def _weight_grad_fwd(x_NxK, ct_NxM):
  return weight_grad(x_NxK, ct_NxM), (x_NxK, ct_NxM)


def _weight_grad_bwd(residuals, g_KxM):
  x_NxK, ct_NxM = residuals
  return matmul(ct_NxM, g_KxM.T), matmul(x_NxK, g_KxM)


weight_grad.defvjp(_weight_grad_fwd, _weight_grad_bwd)


@jax.custom_vjp
def matmul(x_xK: jax.Array, w_KxM: jax.Array) -> jax.Array:
  """`x @ w` over the last axis of `x`; weight gradient via `weight_grad`."""
  return _dot(x_xK, w_KxM, x_xK.ndim - 1, 0)


def _matmul_fwd(x_xK, w_KxM):
  return matmul(x_xK, w_KxM), (x_xK, w_KxM)


def _matmul_bwd(residuals, ct_xM):
  x_xK, w_KxM = residuals
  x_NxK = x_xK.reshape(-1, x_xK.shape[-1])
  ct_NxM = ct_xM.reshape(-1, ct_xM.shape[-1])
  return matmul(ct_xM, w_KxM.T), weight_grad(x_NxK, ct_NxM)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def fast_dot_general(x, w, dimension_numbers, precision=None,
                     preferred_element_type=None, **unused):
  """`nn.Dense`'s `dot_general` slot, served by `matmul`.

  Takes only Dense's product (last axis of `x` with the first of `w`, no
  batch axes); ValueError for anything else. `precision` and
  `preferred_element_type` are not used: the product runs in the inputs'
  dtype at XLA's default precision (full float32 on CPU).
  """
  del precision, preferred_element_type, unused
  (x_axes, w_axes), (x_batch, w_batch) = dimension_numbers
  if (tuple(x_axes) != (x.ndim - 1,) or tuple(w_axes) != (0,) or x_batch
      or w_batch or w.ndim != 2):
    raise ValueError(
        "fast_dot_general: expected Dense's product (last axis of x with "
        f"axis 0 of a 2-D w, no batch axes), got {dimension_numbers} for "
        f"shapes {x.shape} and {w.shape}")
  return matmul(x, w)


DOT_GENERALS = {"fast": fast_dot_general, "plain": lax.dot_general}
NAMES = tuple(DOT_GENERALS)  # the names `get_dot_general` takes


def get_dot_general(name_or_fn: Union[str, Callable]) -> Callable:
  """A `dot_general` for `nn.Dense`: a key of DOT_GENERALS or a function.

  'plain' is `lax.dot_general`, 'fast' `fast_dot_general` (reverse mode
  only); ValueError listing the names for anything else.
  """
  fn = (DOT_GENERALS.get(name_or_fn) if isinstance(name_or_fn, str)
        else name_or_fn)
  if not callable(fn):
    raise ValueError(f"unknown dense product {name_or_fn!r}; expected one of "
                     f"{list(DOT_GENERALS)} or a dot_general function")
  return fn
