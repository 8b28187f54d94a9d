"""iMAML (Rajeswaran, Finn, Kakade and Levine, 2019): implicit meta-gradients.

Per task the inner problem is proximal,
  phi*(theta) = argmin_phi L_support(phi) + lambda/2 |phi - theta|^2,
solved by `inner.steps` steps of the inner optimizer from theta on that
proximal loss (`proximal` below); the achieved norm of its gradient,
`proximal_grad_norm`, is reported, since everything below assumes phi is
its minimiser. The loop is NOT differentiated: at the minimiser
d phi*/d theta = (I + H/lambda)^-1 with H the support-loss Hessian at phi,
so the task's meta-gradient is `g = (I + H/lambda)^-1 grad L_query(phi)`,
found by `algorithm.cg_steps` iterations of conjugate gradient using
Hessian-vector products (forward-over-reverse). Memory does not grow with
`inner.steps`.

The paper's regime is lambda of order 0.5-2 with an inner solver run to
convergence (not lambda = 1 / inner.lr, which makes every SGD step restart
from theta and never solves the proximal problem). `algorithm.cg_damping`
solves ((1 + damping) I + H/lambda) g = grad instead, a Tikhonov damping
that keeps CG well posed where H has curvature below -lambda. CG needs a
positive definite system: a direction of non-positive curvature stops the
task's CG at its last iterate, and `cg_not_positive_definite` counts the
tasks of the meta-batch where that happened (never a NaN).

A fixed-rate solver diverges where the support loss's curvature exceeds
2 / rate (sine tasks of large amplitude, at initialisation);
`algorithm.line_search` makes it a descent method on the proximal loss
(Armijo backtracking, `proximal`). The loop is not differentiated, so the
search costs forward passes only.

Evaluation adapts with the same proximal inner optimizer.

Config: `inner.steps`, `inner.lr`, `inner.optimizer`, `algorithm.lam`,
`algorithm.cg_steps`, `algorithm.cg_damping`, `algorithm.line_search`.
"""
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax.algorithms.base import (
    Algorithm, configured_eval_optimizer, explicit_inner_optimizer, inner_loop)
from metajax.core.inner import with_line_search
from metajax.core.linear_solve import conjugate_gradient
from metajax.core.objective import InnerLoop, query_metrics
from metajax.settings import (
    ConfigError, Section, non_negative, positive, positive_int, setting)

PyTree = Any


@dataclasses.dataclass(frozen=True)
class ImamlConfig(Section):
  """iMAML's `algorithm` section."""
  NAME = "imaml"
  lam: float = setting(1.0, "proximal strength lambda in L(phi) + lambda/2 "
                       "|phi - theta|^2 (the paper: 0.5-2)", check=positive)
  cg_steps: int = setting(5, "conjugate-gradient iterations for "
                          "(I + H/lambda)^-1 g", check=positive_int)
  cg_damping: float = setting(0.0, "CG solves ((1 + damping) I + H/lambda) "
                              "g = grad (0: the exact system)",
                              check=non_negative)
  line_search: bool = setting(False, "inner steps scaled back until the "
                              "proximal loss decreases (Armijo), in training "
                              "and at test time")


def proximal(theta: PyTree, lam: float, base: optax.GradientTransformation,
             line_search: bool = False
             ) -> optax.GradientTransformationExtraArgs:
  """`base` applied to the proximal gradient `grad + lam * (params - theta)`.

  With `line_search`, each step is scaled back until the proximal loss
  `L(phi) + lam/2 |phi - theta|^2` decreases (Armijo backtracking, as
  `metajax.with_line_search`): the inner problem is then solved by a
  descent method whatever the support loss's curvature, where a fixed rate
  above 2 / curvature grows without bound. It reads the support loss and
  gradient that `metajax.adapt` passes as extra arguments.
  """
  inner = (with_line_search(base) if line_search
           else optax.with_extra_args_support(base))
  penalty = lambda p: 0.5 * lam * optax.tree.norm(
      jax.tree.map(jnp.subtract, p, theta), squared=True)
  add_term = lambda g, p: jax.tree.map(lambda g_, p_, t: g_ + lam * (p_ - t),
                                       g, p, theta)

  def update(grads, state, params=None, *, value=None, grad=None,
             value_fn=None, **extra):
    del extra
    if not line_search:
      return inner.update(add_term(grads, params), state, params)
    return inner.update(
        add_term(grads, params), state, params,
        value=value + penalty(params), grad=add_term(grad, params),
        value_fn=lambda p: value_fn(p) + penalty(p))

  return optax.GradientTransformationExtraArgs(inner.init, update)


class ImplicitGrad(NamedTuple):
  grads: PyTree
  metrics: dict


def implicit_task_grad(theta, task, inner: InnerLoop, lam: float,
                       cg_steps: int, cg_damping: float = 0.0,
                       line_search: bool = False) -> ImplicitGrad:
  """iMAML meta-gradient of one task's query loss at its proximal solution."""
  theta = jax.lax.stop_gradient(theta)
  base = inner.optimizer or optax.sgd(inner.learning_rate)
  result = inner.run(theta, task.support, first_order=True,
                     inner_optimizer=proximal(theta, lam, base, line_search))
  phi = jax.lax.stop_gradient(result.params)
  query_grad = jax.grad(inner.loss_fn)(phi, task.query)
  support_loss_end, support_grad_end = jax.value_and_grad(inner.loss_fn)(
      phi, task.support)
  support_grad = lambda p: jax.grad(inner.loss_fn)(p, task.support)

  def matvec(v):  # ((1 + damping) I + H / lambda) v
    hv = jax.jvp(support_grad, (phi,), (v,))[1]
    return jax.tree.map(lambda v_, hv_: (1 + cg_damping) * v_ + hv_ / lam,
                        v, hv)

  solved = conjugate_gradient(matvec, query_grad, cg_steps)
  proximal_grad = jax.tree.map(lambda g, p, t: g + lam * (p - t),
                               support_grad_end, phi, theta)
  pre = (query_metrics(inner, theta, task.query, "pre_")
         if inner.pre_metrics else {})
  metrics = {**pre, **query_metrics(inner, phi, task.query, "post_"),
             "support_loss_start": result.losses[0],
             "support_loss_end": support_loss_end,
             "proximal_grad_norm": optax.tree.norm(proximal_grad),
             "proximal_distance": optax.tree.norm(
                 jax.tree.map(jnp.subtract, phi, theta)),
             "cg_not_positive_definite": solved.not_positive_definite}
  return ImplicitGrad(solved.solution, metrics)


def imaml_meta_grad(inner: InnerLoop, lam: float, cg_steps: int,
                    cg_damping: float = 0.0, line_search: bool = False):
  """`meta_grad_fn(params, tasks, key, step)`: implicit gradients, vmapped.

  Metrics are means over the meta-batch, except `cg_not_positive_definite`,
  the number of its tasks whose CG met non-positive curvature.
  """
  def meta_grad_fn(params, tasks, key, step):
    del key, step
    grads_T, metrics_T = jax.vmap(lambda t: implicit_task_grad(
        params, t, inner, lam, cg_steps, cg_damping, line_search))(tasks)
    indefinite_T = metrics_T.pop("cg_not_positive_definite")
    metrics = jax.tree.map(jnp.mean, metrics_T)
    metrics["cg_not_positive_definite"] = jnp.sum(
        indefinite_T.astype(jnp.float32))
    metrics["meta_loss"] = metrics["post_loss"]
    return jax.tree.map(lambda g_T: jnp.mean(g_T, axis=0), grads_T), metrics
  return meta_grad_fn


def make_meta_grad(config, problem):
  algorithm = config.algorithm
  return imaml_meta_grad(inner_loop(config, problem, first_order=True),
                         algorithm.lam, algorithm.cg_steps,
                         algorithm.cg_damping, algorithm.line_search)


def check(config, problem):
  """ConfigError for `eval.line_search`, which would search the support loss
  alone: iMAML's test-time steps solve the proximal problem."""
  del problem
  if config.eval.line_search:
    raise ConfigError(
        "config field 'eval.line_search': iMAML adapts on the proximal loss; "
        "use --algorithm.line_search=true, which searches that loss in "
        "training and at test time")


def eval_adaptation(config, problem, meta_params):
  optimizer = proximal(meta_params, config.algorithm.lam,
                       explicit_inner_optimizer(config),
                       config.algorithm.line_search)
  return meta_params, inner_loop(config, problem, optimizer=optimizer)


ALGORITHM = Algorithm(
    name="imaml", family="optimization", config_class=ImamlConfig,
    make_meta_grad=make_meta_grad, eval_adaptation=eval_adaptation,
    check=check,
    eval_optimizer=lambda config: (
        f"{configured_eval_optimizer(config)} on the proximal loss "
        f"(algorithm.lam={config.algorithm.lam})"
        + (", backtracking line search on it" if config.algorithm.line_search
           else "")),
    uses_forward_mode=True)
