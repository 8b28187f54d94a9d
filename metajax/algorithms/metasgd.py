"""Meta-SGD (Li et al., 2017): learn the initialisation and a rate per weight.

Meta-parameters are `{"params": model_params, "log_lr": tree like params}`;
the inner step is `phi <- phi - exp(log_lr) * grad` elementwise. Rates are
stored as log-rates (so they stay positive; the paper's rates may change
sign) initialised to `log(inner.lr)`, and receive second-order
meta-gradients through the unrolled inner loop like the initialisation.
Evaluation adapts with the learned rates.

Config: `inner.steps`, `inner.lr` (initial rate), `inner.first_order`,
`inner.remat`; `inner.optimizer` must be "sgd" (the learned rates are the
optimizer).
"""
import jax

from metajax.algorithms._rates import (
    init_log_rates, learned_rate_sgd, mean_rate)
from metajax.algorithms.base import Algorithm, inner_loop, no_settings
from metajax.algorithms.maml import maml_meta_grad
from metajax.core.objective import maml_task_loss
from metajax.settings import ConfigError


def check(config, problem):
  del problem
  if config.inner.optimizer != "sgd":
    raise ConfigError(
        "config field 'inner.optimizer': metasgd learns its own per-parameter "
        f"SGD rates and needs 'sgd', got {config.inner.optimizer!r}")


def init_meta_params(config, problem, model_params):
  del problem
  return {"params": model_params,
          "log_lr": init_log_rates(model_params, config.inner.lr)}


def metasgd_task_loss(meta_params, task, inner):
  """`maml_task_loss` adapting `meta_params["params"]` at the learned rates."""
  return maml_task_loss(meta_params["params"], task, inner,
                        inner_optimizer=learned_rate_sgd(meta_params["log_lr"]))


def make_meta_grad(config, problem):
  maml_grad_fn = maml_meta_grad(inner_loop(config, problem),
                                task_loss=metasgd_task_loss)

  def meta_grad_fn(meta_params, tasks, key, step):
    grads, metrics = maml_grad_fn(meta_params, tasks, key, step)
    metrics["inner_lr_mean"] = mean_rate(
        jax.lax.stop_gradient(meta_params["log_lr"]))
    return grads, metrics

  return meta_grad_fn


def eval_adaptation(config, problem, meta_params):
  inner = inner_loop(config, problem,
                     optimizer=learned_rate_sgd(meta_params["log_lr"]))
  return meta_params["params"], inner


MetasgdConfig = no_settings("metasgd")

ALGORITHM = Algorithm(
    name="metasgd", family="optimization", config_class=MetasgdConfig,
    make_meta_grad=make_meta_grad, check=check,
    init_meta_params=init_meta_params, eval_adaptation=eval_adaptation,
    eval_optimizer=lambda config: "sgd at the learned per-parameter rates")
