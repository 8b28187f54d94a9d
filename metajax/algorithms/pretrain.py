"""The MAML paper's "pretrained" baseline: one network fit to all tasks jointly.

The meta-gradient is the plain gradient of the mean loss over every task's
support and query points at the shared parameters (no adaptation); at test
time the network is fine-tuned like MAML's.
"""
import jax
import jax.numpy as jnp

from metajax.algorithms.base import Algorithm, no_settings


def make_meta_grad(config, problem):
  del config
  loss_fn = problem.loss_fn

  def joint_loss(params, tasks):
    per_task = lambda task: 0.5 * (loss_fn(params, task.support)
                                   + loss_fn(params, task.query))
    losses_T = jax.vmap(per_task)(tasks)
    return jnp.mean(losses_T), losses_T

  def meta_grad_fn(params, tasks, key, step):
    del key, step
    (loss, losses_T), grads = jax.value_and_grad(joint_loss, has_aux=True)(
        params, tasks)
    return grads, {"meta_loss": loss, "pre_loss": jnp.mean(losses_T)}

  return meta_grad_fn


PretrainConfig = no_settings("pretrain")

ALGORITHM = Algorithm(name="pretrain", family="optimization",
                      config_class=PretrainConfig,
                      make_meta_grad=make_meta_grad)
