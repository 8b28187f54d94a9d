"""iMAML (Rajeswaran, Finn, Kakade and Levine, 2019): implicit meta-gradients.

Per task the inner problem is proximal,
  phi*(theta) = argmin_phi L_support(phi) + lambda/2 |phi - theta|^2,
solved approximately by `inner.steps` steps of the inner optimizer from theta
with the proximal gradient `lambda (phi - theta)` added to the loss gradient
(`proximal` below). The loop is NOT differentiated: at the solution,
d phi*/d theta = (I + H/lambda)^-1 with H the support-loss Hessian at phi, so
the task's meta-gradient is `g = (I + H/lambda)^-1 grad L_query(phi)`,
found by `algorithm.cg_steps` iterations of conjugate gradient using Hessian-vector
products (forward-over-reverse). Memory does not grow with `inner_steps`.
The estimate is exact when the inner problem is solved exactly.

Evaluation adapts with the same proximal inner optimizer.

Config: `inner.steps`, `inner.lr`, `inner.optimizer`, `algorithm.lam`,
`algorithm.cg_steps`.
"""
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms.base import (
    Algorithm, configured_eval_optimizer, explicit_inner_optimizer, inner_loop)
from metajax.core.objective import InnerLoop, query_metrics
from metajax.settings import Section, positive, positive_int, setting

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ImamlConfig(Section):
  """iMAML's `algorithm` section."""
  NAME = "imaml"
  lam: float = setting(1.0, "proximal strength lambda in L(phi) + lambda/2 "
                       "|phi - theta|^2", check=positive)
  cg_steps: int = setting(5, "conjugate-gradient iterations for "
                          "(I + H/lambda)^-1 g", check=positive_int)


def proximal(theta: PyTree, lam: float, base: optax.GradientTransformation
             ) -> optax.GradientTransformation:
  """`base` applied to `grad + lam * (params - theta)`."""
  def add_proximal_term(grads, state, params):
    grads = jax.tree.map(lambda g, p, t: g + lam * (p - t), grads, params,
                         theta)
    return grads, state

  add = optax.GradientTransformation(lambda params: optax.EmptyState(),
                                     add_proximal_term)
  return optax.chain(add, base)


def conjugate_gradient(matvec, b: PyTree, num_steps: int) -> PyTree:
  """`num_steps` CG iterations for `matvec(x) = b` from x = 0 (pytrees)."""
  dot = optax.tree.vdot
  safe_div = lambda a, c: jnp.where(c > 0, a / jnp.where(c > 0, c, 1), 0.0)

  def body(_, carry):
    x, r, p, rr = carry
    ap = matvec(p)
    alpha = safe_div(rr, dot(p, ap))
    x = jax.tree.map(lambda x_, p_: x_ + alpha * p_, x, p)
    r = jax.tree.map(lambda r_, ap_: r_ - alpha * ap_, r, ap)
    rr_new = dot(r, r)
    beta = safe_div(rr_new, rr)
    p = jax.tree.map(lambda r_, p_: r_ + beta * p_, r, p)
    return x, r, p, rr_new

  x0 = jax.tree.map(jnp.zeros_like, b)
  init = (x0, b, b, dot(b, b))
  x, _, _, _ = jax.lax.fori_loop(0, num_steps, body, init)
  return x


class ImplicitGrad(NamedTuple):
  grads: PyTree
  metrics: dict


def implicit_task_grad(theta, task, inner: InnerLoop, lam: float,
                       cg_steps: int) -> ImplicitGrad:
  """iMAML meta-gradient of one task's query loss at its proximal solution."""
  theta = jax.lax.stop_gradient(theta)
  base = inner.optimizer or optax.sgd(inner.learning_rate)
  result = inner.run(theta, task.support, first_order=True,
                     inner_optimizer=proximal(theta, lam, base))
  phi = jax.lax.stop_gradient(result.params)
  query_grad = jax.grad(inner.loss_fn)(phi, task.query)
  support_grad = lambda p: jax.grad(inner.loss_fn)(p, task.support)

  def matvec(v):  # (I + H / lambda) v
    hv = jax.jvp(support_grad, (phi,), (v,))[1]
    return jax.tree.map(lambda v_, hv_: v_ + hv_ / lam, v, hv)

  grads = conjugate_gradient(matvec, query_grad, cg_steps)
  pre = (query_metrics(inner, theta, task.query, "pre_")
         if inner.pre_metrics else {})
  metrics = {**pre, **query_metrics(inner, phi, task.query, "post_"),
             "support_loss_start": result.losses[0],
             "support_loss_end": inner.loss_fn(phi, task.support),
             "proximal_distance": optax.tree.norm(
                 jax.tree.map(jnp.subtract, phi, theta))}
  return ImplicitGrad(grads, metrics)


def imaml_meta_grad(inner: InnerLoop, lam: float, cg_steps: int):
  """`meta_grad_fn(params, tasks, key, step)`: implicit gradients, vmapped."""
  def meta_grad_fn(params, tasks, key, step):
    del key, step
    grads_T, metrics_T = jax.vmap(
        lambda t: implicit_task_grad(params, t, inner, lam, cg_steps))(tasks)
    metrics = jax.tree.map(jnp.mean, metrics_T)
    metrics["meta_loss"] = metrics["post_loss"]
    return jax.tree.map(lambda g_T: jnp.mean(g_T, axis=0), grads_T), metrics
  return meta_grad_fn


def make_meta_grad(config, problem):
  return imaml_meta_grad(inner_loop(config, problem, first_order=True),
                         config.algorithm.lam, config.algorithm.cg_steps)


def eval_adaptation(config, problem, meta_params):
  optimizer = proximal(meta_params, config.algorithm.lam,
                       explicit_inner_optimizer(config))
  return meta_params, inner_loop(config, problem, optimizer=optimizer)


ALGORITHM = Algorithm(
    name="imaml", family="optimization", config_class=ImamlConfig,
    make_meta_grad=make_meta_grad, eval_adaptation=eval_adaptation,
    eval_optimizer=lambda config: (
        f"{configured_eval_optimizer(config)} on the proximal loss "
        f"(algorithm.lam={config.algorithm.lam})"),
    uses_forward_mode=True)
