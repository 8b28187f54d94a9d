"""MAML++ (Antoniou, Edwards and Storkey, 2019, "How to train your MAML").

Implemented from the paper:
- LSLR: learned per-layer, per-step inner rates. Meta-parameters are
  `{"params": model_params, "log_lr": one (inner_steps,) vector per parameter
  tensor}`, initialised to `log(inner.lr)`. Evaluation beyond `inner_steps`
  reuses the last step's rates.
- MSL: multi-step loss, the query loss after every inner step weighted by
  `v(step)`: uniform at meta-step 0, annealed linearly to the last step only
  over `algorithm.msl_anneal_steps` meta-steps (the paper floors the non-final weights
  at 0.03/N while annealing and then switches to the final-step loss; 0
  disables MSL).
- DA: derivative-order annealing, first-order meta-gradients before meta-step
  `algorithm.first_order_until`, second-order after (`lax.cond` on the step; the
  meta-step passes `step` to every meta-gradient function).
  `inner.first_order=true` keeps it first-order throughout.
- CA: cosine annealing of the outer rate: set `outer.schedule=cosine`.
Not implemented: per-step batch-norm statistics and weights (BNRS/BNWB);
they need a model with batch norm and per-step state, which the MLP lacks.

Config: `inner.steps`, `inner.lr` (initial rates), `inner.first_order`,
`inner.remat`, `algorithm.msl_anneal_steps`, `algorithm.first_order_until`;
`inner.optimizer` must be "sgd".
"""
import dataclasses

import jax
import jax.numpy as jnp

from metajax.algorithms._rates import (
    init_log_rates, learned_rate_sgd, mean_rate)
from metajax.algorithms.base import Algorithm, inner_loop
from metajax.core.objective import InnerLoop, query_metrics
from metajax.settings import (
    ConfigError, Section, non_negative_int, setting)


@dataclasses.dataclass(frozen=True)
class MamlppConfig(Section):
  """MAML++'s `algorithm` section."""
  NAME = "mamlpp"
  msl_anneal_steps: int = setting(
      7_500, "multi-step-loss weights go from uniform to last-step-only over "
      "this many meta-steps (0: last step only)", check=non_negative_int)
  first_order_until: int = setting(
      25_000, "first-order meta-gradients before this meta-step",
      check=non_negative_int)


def check(config, problem):
  del problem
  if config.inner.optimizer != "sgd":
    raise ConfigError(
        "config field 'inner.optimizer': mamlpp learns per-step SGD rates and "
        f"needs 'sgd', got {config.inner.optimizer!r}")


def init_meta_params(config, problem, model_params):
  del problem
  return {"params": model_params,
          "log_lr": init_log_rates(model_params, config.inner.lr,
                                   num_steps=config.inner.steps)}


def msl_weights(step, num_steps: int, anneal_steps: int) -> jax.Array:
  """Multi-step-loss weights, shape `(num_steps,)`, summing to 1."""
  last_S = jax.nn.one_hot(num_steps - 1, num_steps)
  if anneal_steps == 0:
    return last_S
  progress = jnp.clip(step / anneal_steps, 0.0, 1.0)
  uniform_S = jnp.full((num_steps,), 1.0 / num_steps)
  return (1.0 - progress) * uniform_S + progress * last_S


def mamlpp_task_loss(meta_params, task, inner: InnerLoop, weights_S,
                     first_order):
  """Weighted query losses after each inner step, and metrics, for one task."""
  result = inner.run(
      meta_params["params"], task.support, first_order=first_order,
      inner_optimizer=learned_rate_sgd(meta_params["log_lr"], per_step=True),
      per_step_fn=lambda p: inner.loss_fn(p, task.query))
  query_losses_S = result.per_step
  pre = (query_metrics(inner, jax.lax.stop_gradient(meta_params["params"]),
                       task.query, "pre_") if inner.pre_metrics else {})
  post = query_metrics(inner, jax.lax.stop_gradient(result.params), task.query,
                       "post_")
  metrics = {**pre, **post, "support_loss_start": result.losses[0]}
  loss = jnp.sum(weights_S.astype(query_losses_S.dtype) * query_losses_S)
  return loss, jax.tree.map(jax.lax.stop_gradient, metrics)


def make_meta_grad(config, problem):
  inner = inner_loop(config, problem)
  num_steps = config.inner.steps

  def meta_grad_fn(meta_params, tasks, key, step):
    del key
    weights_S = msl_weights(step, num_steps, config.algorithm.msl_anneal_steps)

    def grads(first_order):
      def objective(meta):
        losses_T, metrics_T = jax.vmap(lambda t: mamlpp_task_loss(
            meta, t, inner, weights_S, first_order))(tasks)
        return jnp.mean(losses_T), metrics_T
      return jax.value_and_grad(objective, has_aux=True)(meta_params)

    if config.inner.first_order:
      (loss, metrics_T), meta_grads = grads(True)
    else:
      (loss, metrics_T), meta_grads = jax.lax.cond(
          step < config.algorithm.first_order_until, lambda: grads(True),
          lambda: grads(False))
    metrics = jax.tree.map(jnp.mean, metrics_T)
    metrics["meta_loss"] = loss
    metrics["msl_last_weight"] = weights_S[-1]
    metrics["inner_lr_mean"] = mean_rate(
        jax.lax.stop_gradient(meta_params["log_lr"]))
    return meta_grads, metrics

  return meta_grad_fn


def eval_adaptation(config, problem, meta_params):
  optimizer = learned_rate_sgd(meta_params["log_lr"], per_step=True)
  return meta_params["params"], inner_loop(config, problem, optimizer=optimizer)


ALGORITHM = Algorithm(
    name="mamlpp", family="optimization", config_class=MamlppConfig,
    make_meta_grad=make_meta_grad, check=check,
    init_meta_params=init_meta_params, eval_adaptation=eval_adaptation,
    eval_optimizer=lambda config: "sgd at the learned per-layer, per-step "
    "rates")
