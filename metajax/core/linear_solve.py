"""Conjugate gradient on pytrees, for the linear systems meta-gradients
solve: iMAML's (I + H/lambda) g = grad and TRPO's natural step F x = g.

Matrix-free: `matvec` is a Hessian- or Fisher-vector product, never a
matrix.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


class CGResult(NamedTuple):
  """What `conjugate_gradient` returns.

  Attributes:
    solution: the last iterate x.
    not_positive_definite: True where a search direction p had p^T A p <= 0
      (A is not positive definite there); x is the iterate before it.
  """
  solution: PyTree
  not_positive_definite: jax.Array


def conjugate_gradient(matvec, b: PyTree, num_steps: int) -> CGResult:
  """`num_steps` CG iterations for `matvec(x) = b` from x = 0 (pytrees).

  Stops updating at the first direction of non-positive curvature (CG's
  step would be infinite or uphill) or once the residual is exactly zero.
  """
  dot = optax.tree.vdot

  def body(_, carry):
    x, r, p, rr, stopped, indefinite = carry
    ap = matvec(p)
    curvature = dot(p, ap)
    bad = jnp.logical_not(curvature > 0) & jnp.logical_not(stopped) & (rr > 0)
    indefinite = indefinite | bad
    stopped = stopped | bad | jnp.logical_not(rr > 0)
    alpha = jnp.where(stopped, 0.0, rr / jnp.where(stopped, 1.0, curvature))
    x = jax.tree.map(lambda x_, p_: x_ + alpha * p_, x, p)
    r = jax.tree.map(lambda r_, ap_: r_ - alpha * ap_, r, ap)
    rr_new = dot(r, r)
    beta = jnp.where(stopped, 0.0, rr_new / jnp.where(stopped, 1.0, rr))
    p = jax.tree.map(lambda r_, p_: r_ + beta * p_, r, p)
    return x, r, p, rr_new, stopped, indefinite

  x0 = jax.tree.map(jnp.zeros_like, b)
  false = jnp.zeros((), bool)
  init = (x0, b, b, dot(b, b), false, false)
  x, _, _, _, _, indefinite = jax.lax.fori_loop(0, num_steps, body, init)
  return CGResult(x, indefinite)
