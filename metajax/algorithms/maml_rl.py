"""MAML for reinforcement learning (Finn et al. 2017, section 5.3), in one jit.

Each task of the meta-batch (its parameters, e.g. a goal, in the
`TaskBatch`'s support) is handled inside the meta-gradient, vmapped over
tasks: sample `trajectories` episodes with the current policy, fit the
linear baseline, take `inner.steps` policy-gradient ascent steps at
`inner.lr` (sampling afresh after each), sample the adapted policy's
episodes and score them with the estimator. Differentiating that through
the inner steps gives the meta-gradient; the estimator
(`metajax.core.policy_gradient`) decides whether its second-order part is
right: `dice` and `loaded_dice` (at lambda 1) are unbiased, `lvc` (the
default, ProMP's) drops the cross-step terms for lower variance, and
`surrogate` (the original MAML-RL code) drops the score-score terms.

The outer step is the trainer's optimizer on that gradient (`outer_step`
"gradient", Adam in the experiments), or TRPO as in the paper ("trpo": a
conjugate-gradient natural step on the meta-objective with a backtracking
line search keeping the adapted policies' mean KL under `max_kl`). TRPO's
step is returned as minus the gradient, for the outer SGD at rate 1.

Evaluation (the paper's): each of `eval.num_tasks` fixed goals is adapted
with plain policy-gradient steps at `eval_lrs` (one per step, the last
repeated); the return of the trajectories sampled before each step is
reported, with its 95% interval.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metajax import backend
from metajax.algorithms.base import Algorithm
from metajax.core import policy_gradient as pg
from metajax.core.linear_solve import conjugate_gradient
from metajax.core.evaluation import summarize_curves
from metajax.models.policy import gaussian_kl, gaussian_log_prob
from metajax.settings import (
    ConfigError, Section, non_negative, positive, positive_int,
    positive_numbers, setting, unit_interval)


@dataclasses.dataclass(frozen=True)
class MamlRLConfig(Section):
  """MAML-RL's `algorithm` section (inner rate and steps: `inner`)."""
  NAME = "maml_rl"
  estimator: str = setting("lvc", "meta-gradient estimator",
                           choices=pg.ESTIMATORS)
  trajectories: int = setting(20, "trajectories sampled per task and "
                              "adaptation step", check=positive_int)
  discount: float = setting(0.99, "discount", check=unit_interval)
  gae_lambda: float = setting(1.0, "GAE lambda of the advantages",
                              check=unit_interval)
  dice_lambda: float = setting(1.0, "loaded DiCE's decay of past "
                               "log-probabilities (1: unbiased)",
                               check=unit_interval)
  normalize_advantages: bool = setting(True, "standardise each task's "
                                       "advantages (rllab's center_adv)")
  outer_step: str = setting("gradient", "the trainer's optimizer on the "
                            "meta-gradient, or TRPO's natural step (needs "
                            "outer.optimizer=sgd, outer.lr=1)",
                            choices=("gradient", "trpo"))
  max_kl: float = setting(0.01, "TRPO: mean KL bound", check=positive)
  cg_iterations: int = setting(10, "TRPO: conjugate-gradient iterations",
                               check=positive_int)
  cg_damping: float = setting(1e-5, "TRPO: damping added to the Fisher "
                              "product", check=non_negative)
  line_search_steps: int = setting(10, "TRPO: backtracking halvings tried",
                                   check=positive_int)
  eval_lrs: tuple[float, ...] = setting(
      (0.1, 0.05), "test-time rates, one per step (the last repeats)",
      check=positive_numbers)


def check(config, problem):
  """ConfigError for a non-RL task or an outer optimizer TRPO cannot use."""
  if problem.environment is None:
    raise ConfigError("config field 'task': maml_rl needs a "
                      "reinforcement-learning task (e.g. task=navigation)")
  if config.inner.optimizer != "sgd":
    raise ConfigError("config field 'inner.optimizer': maml_rl adapts with "
                      "plain policy-gradient steps; expected 'sgd'")
  settings = config.algorithm
  if settings.outer_step == "trpo" and (
      config.outer.optimizer != "sgd" or config.outer.lr != 1.0
      or config.outer.schedule != "constant"):
    raise ConfigError(
        "config field 'outer.optimizer': algorithm.outer_step=trpo returns "
        "TRPO's step as the gradient, so the outer optimizer must apply it "
        "unchanged; set outer.optimizer=sgd, outer.lr=1, "
        "outer.schedule=constant")


class _Parts:
  """The per-task functions of a run, built from its config and problem."""

  def __init__(self, config, problem):
    self.settings = settings = config.algorithm
    self.env = problem.environment
    self.policy_fn = problem.model.apply
    self.estimator = pg.get(settings.estimator)
    self.num_trajectories = settings.trajectories

  def log_probs(self, params, trajectories):
    mean_NxTxA, log_std_A = self.policy_fn(params, trajectories.obs)
    return gaussian_log_prob(mean_NxTxA, log_std_A, trajectories.actions)

  def signals(self, trajectories):
    s = self.settings
    return pg.make_signals(trajectories.obs, trajectories.rewards,
                           trajectories.mask, s.discount, s.gae_lambda,
                           s.normalize_advantages)

  def objective(self, params, trajectories, signals, logp_ref=None):
    """The estimator's objective of one task's trajectories (maximised)."""
    return pg.objective(self.estimator, self.log_probs(params, trajectories),
                        signals, self.settings.discount,
                        self.settings.dice_lambda, logp_ref)

  def sample(self, params, goal, key):
    return self.env.rollout(params, goal, key, self.num_trajectories)

  def ascent(self, params, trajectories, lr, first_order=False):
    """One policy-gradient ascent step on `trajectories`."""
    grads = jax.grad(self.objective)(params, trajectories,
                                     self.signals(trajectories))
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    return jax.tree.map(lambda p, g: p + lr * g, params, grads)


def mean_return(trajectories):
  """Mean undiscounted return per trajectory."""
  return jnp.mean(jnp.sum(trajectories.rewards * trajectories.mask, axis=1))


def make_meta_grad(config, problem):
  """`meta_grad_fn(params, tasks, key, step)`: rollouts, adaptation and the
  meta-gradient of every task in one program, vmapped over tasks."""
  parts = _Parts(config, problem)
  steps, lr = config.inner.steps, config.inner.lr
  first_order = config.inner.first_order

  def adapt(params, goal, key):
    """Adapted params and the inner trajectories, sampled step by step."""
    sampled = []
    for key_k in jax.random.split(key, steps):
      trajectories = parts.sample(params, goal, key_k)
      sampled.append(trajectories)
      params = parts.ascent(params, trajectories, lr, first_order)
    return params, sampled

  def task_rollouts(params, goal, key):
    inner_key, outer_key = jax.random.split(key)
    adapted, sampled = adapt(params, goal, inner_key)
    return sampled, parts.sample(adapted, goal, outer_key)

  def readapt(params, sampled):
    for trajectories in sampled:
      params = parts.ascent(params, trajectories, lr, first_order)
    return params

  def task_objective(params, sampled, query, logp_ref=None):
    adapted = readapt(params, sampled)
    return parts.objective(adapted, query, parts.signals(query), logp_ref)

  def meta_objective(params, sampled_T, query_T, logp_ref_T=None):
    values_T = jax.vmap(task_objective, (None, 0, 0, 0))(
        params, sampled_T, query_T, logp_ref_T)
    return jnp.mean(values_T)

  def rollouts(params, tasks, key):
    goals_T = tasks.support
    keys = jax.random.split(key, goals_T.shape[0])
    return jax.vmap(task_rollouts, (None, 0, 0))(params, goals_T, keys)

  def metrics_of(sampled_T, query_T, objective):
    # The estimator's value is no measure of progress (standardised
    # advantages sum to about zero): meta_loss is minus the adapted return.
    post_return = jnp.mean(jax.vmap(mean_return)(query_T))
    return {"pre_return": jnp.mean(jax.vmap(mean_return)(sampled_T[0])),
            "post_return": post_return, "meta_loss": -post_return,
            "surrogate_objective": objective}

  def gradient_step(params, tasks, key, step):
    del step
    sampled_T, query_T = rollouts(params, tasks, key)
    value, grads = jax.value_and_grad(meta_objective)(params, sampled_T,
                                                      query_T)
    metrics = metrics_of(sampled_T, query_T, value)
    return jax.tree.map(jnp.negative, grads), metrics

  def trpo_step(params, tasks, key, step):
    del step
    settings = config.algorithm
    sampled_T, query_T = rollouts(params, tasks, key)
    flat0, unravel = ravel_pytree(params)
    adapted_T = jax.vmap(readapt, (None, 0))(params, sampled_T)
    old_T = jax.lax.stop_gradient(jax.vmap(parts.policy_fn)(
        adapted_T, query_T.obs))
    logp_ref_T = jax.vmap(gaussian_log_prob)(old_T[0], old_T[1],
                                             query_T.actions)

    def surrogate(flat):
      return meta_objective(unravel(flat), sampled_T, query_T, logp_ref_T)

    def mean_kl(flat):
      adapted = jax.vmap(readapt, (None, 0))(unravel(flat), sampled_T)
      new_T = jax.vmap(parts.policy_fn)(adapted, query_T.obs)
      kl_TxNxT = jax.vmap(gaussian_kl)(old_T[0], old_T[1], new_T[0],
                                       new_T[1])
      mask = query_T.mask
      return jnp.sum(kl_TxNxT * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    value, g = jax.value_and_grad(surrogate)(flat0)
    fisher = lambda v: (jax.jvp(jax.grad(mean_kl), (flat0,), (v,))[1]
                        + settings.cg_damping * v)
    direction = conjugate_gradient(fisher, g, settings.cg_iterations).solution
    shs = jnp.maximum(direction @ fisher(direction), 1e-12)
    full_step = jnp.sqrt(2 * settings.max_kl / shs) * direction
    fractions = 0.5 ** jnp.arange(settings.line_search_steps,
                                  dtype=flat0.dtype)

    def try_fraction(_, fraction):
      candidate = flat0 + fraction * full_step
      return None, (surrogate(candidate) - value, mean_kl(candidate))

    _, (gains, kls) = jax.lax.scan(try_fraction, None, fractions)
    ok = (gains > 0) & (kls <= settings.max_kl) & jnp.isfinite(gains)
    chosen = jnp.where(jnp.any(ok), fractions[jnp.argmax(ok)], 0.0)
    metrics = metrics_of(sampled_T, query_T, value)
    metrics.update(trpo_step_fraction=chosen,
                   trpo_kl=jnp.where(jnp.any(ok), kls[jnp.argmax(ok)], 0.0))
    return unravel(-chosen * full_step), metrics

  return trpo_step if config.algorithm.outer_step == "trpo" else gradient_step


def adaptation_returns(config, problem, params, goals_G, key, num_steps: int):
  """Mean return of each goal's trajectories before each of `num_steps`
  test-time adaptation steps and after the last, `(G, num_steps + 1)`."""
  parts = _Parts(config, problem)
  rates = config.algorithm.eval_lrs

  def one_goal(goal, goal_key):
    current, returns = params, []
    for k, key_k in enumerate(jax.random.split(goal_key, num_steps + 1)):
      trajectories = parts.sample(current, goal, key_k)
      returns.append(mean_return(trajectories))
      if k < num_steps:
        current = parts.ascent(current, trajectories,
                               rates[min(k, len(rates) - 1)], True)
    return jnp.stack(returns)

  keys = jax.random.split(key, goals_G.shape[0])
  run = jax.jit(jax.vmap(one_goal), compiler_options=backend.compiler_options())
  return np.asarray(run(goals_G, keys))


def evaluate(config, problem, meta_params, split="test", num_tasks=None
             ) -> dict:
  """The paper's protocol: returns after 0..max(eval.inner_steps) steps on
  the task's fixed evaluation goals, mean and 95% interval."""
  steps = (0,) + tuple(config.eval.inner_steps)
  results = {}
  for name, tasks in problem.eval_tasks(split, num_tasks).items():
    key = jax.random.fold_in(jax.random.key(config.eval.seed), 7)
    returns = adaptation_returns(config, problem, meta_params, tasks.support,
                                 key, max(steps))
    results[name] = summarize_curves({"return": returns}, steps)
  return results


ALGORITHM = Algorithm(
    name="maml_rl", family="optimization", config_class=MamlRLConfig,
    make_meta_grad=make_meta_grad, check=check, evaluate=evaluate,
    eval_optimizer=lambda config: (
        f"policy-gradient ascent at algorithm.eval_lrs="
        f"{config.algorithm.eval_lrs}"))
