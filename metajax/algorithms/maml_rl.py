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
"gradient", Adam in the experiments), TRPO as in the paper ("trpo"), or
ProMP's clipped objective ("promp"); the latter two live in `rl_outer` and
return their step as minus the gradient, for the outer SGD at rate 1 (ProMP
keeps its own Adam state in the meta-parameters: `init_meta_params`).
`pretrain=true` is the paper's "pretrained" baseline: the plain policy
gradient of the pre-adaptation return on all tasks, no inner step.

Evaluation (the paper's): each of `eval.num_tasks` fixed goals is adapted
with plain policy-gradient steps at `eval_lrs` (one per step, the last
repeated) on `eval_trajectories` fresh trajectories each; the return of the
trajectories sampled before each step is reported, with its 95% interval.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from metajax import backend
from metajax.algorithms import rl_outer
from metajax.algorithms.base import Algorithm
from metajax.algorithms.rl_outer import Batch
from metajax.core import policy_gradient as pg
from metajax.core.evaluation import summarize_curves
from metajax.models.policy import gaussian_log_prob
from metajax.settings import (
    ConfigError, Section, non_negative, positive, positive_int,
    positive_numbers, setting, unit_interval)


OUTER_STEPS = ("gradient", "trpo", "promp")


def open_unit_interval(value):
  return None if 0 < value < 1 else "a number in (0, 1)"


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
                            "meta-gradient, TRPO's natural step or ProMP's "
                            "clipped steps (both need outer.optimizer=sgd, "
                            "outer.lr=1)", choices=OUTER_STEPS)
  max_kl: float = setting(0.01, "TRPO: mean KL bound", check=positive)
  cg_iterations: int = setting(10, "TRPO: conjugate-gradient iterations",
                               check=positive_int)
  cg_damping: float = setting(1e-5, "TRPO: damping added to the Fisher "
                              "product", check=non_negative)
  line_search_steps: int = setting(10, "TRPO: backtracking halvings tried",
                                   check=positive_int)
  clip_eps: float = setting(0.3, "ProMP: clipping range of the likelihood "
                            "ratio", check=open_unit_interval)
  promp_steps: int = setting(5, "ProMP: Adam steps per batch of samples",
                             check=positive_int)
  promp_lr: float = setting(1e-3, "ProMP: Adam's rate", check=positive)
  promp_kl_coeff: float = setting(5e-4, "ProMP: (initial) coefficient of "
                                  "the pre-update policies' KL penalty",
                                  check=non_negative)
  promp_adaptive_kl: bool = setting(False, "ProMP: halve or double each "
                                    "inner step's KL coefficient after each "
                                    "iteration towards promp_kl_target")
  promp_kl_target: float = setting(0.01, "ProMP: the inner KL the adaptive "
                                   "coefficient aims at", check=positive)
  pretrain: bool = setting(False, "maximise the pre-adaptation return by "
                           "plain policy gradient on all tasks (no inner "
                           "step, no meta-gradient): the paper's "
                           "'pretrained' baseline")
  eval_lrs: tuple[float, ...] = setting(
      (0.1, 0.05), "test-time rates, one per step (the last repeats)",
      check=positive_numbers)
  eval_trajectories: int = setting(20, "trajectories sampled per goal and "
                                   "test-time step (the paper: 4000 steps, "
                                   "i.e. 4000 / horizon)", check=positive_int)


def check(config, problem):
  """ConfigError for a non-RL task or an outer optimizer TRPO cannot use."""
  if problem.environment is None:
    raise ConfigError("config field 'task': maml_rl needs a "
                      "reinforcement-learning task (e.g. task=navigation)")
  if config.inner.optimizer != "sgd":
    raise ConfigError("config field 'inner.optimizer': maml_rl adapts with "
                      "plain policy-gradient steps; expected 'sgd'")
  settings = config.algorithm
  if settings.pretrain and settings.outer_step != "gradient":
    raise ConfigError(
        "config field 'algorithm.outer_step': algorithm.pretrain=true trains "
        "by the plain policy gradient; expected 'gradient', got "
        f"{settings.outer_step!r}")
  if settings.outer_step == "promp" and settings.estimator != "lvc":
    raise ConfigError(
        "config field 'algorithm.estimator': ProMP's inner step is LVC "
        f"importance-weighted to the sampling policy; expected 'lvc', got "
        f"{settings.estimator!r}")
  if settings.outer_step in ("trpo", "promp") and (
      config.outer.optimizer != "sgd" or config.outer.lr != 1.0
      or config.outer.schedule != "constant"):
    raise ConfigError(
        f"config field 'outer.optimizer': algorithm.outer_step="
        f"{settings.outer_step} returns its step as the gradient, so the "
        "outer optimizer must apply it unchanged; set outer.optimizer=sgd, "
        "outer.lr=1, outer.schedule=constant")


class _Parts:
  """The per-task functions of a run, built from its config and problem."""

  def __init__(self, config, problem):
    self.settings = settings = config.algorithm
    self.env = problem.environment
    self.policy_fn = problem.model.apply
    self.estimator = pg.get(settings.estimator)
    self.num_trajectories = settings.trajectories
    self.inner_steps, self.inner_lr = config.inner.steps, config.inner.lr
    self.first_order = config.inner.first_order

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

  def sample(self, params, goal, key, num_trajectories=None):
    return self.env.rollout(params, goal, key,
                            num_trajectories or self.num_trajectories)

  def ascent(self, params, trajectories, signals, lr, first_order=False,
             logp_ref=None):
    """One policy-gradient ascent step on `trajectories` (importance-weighted
    to the sampling policy when its `logp_ref` is given)."""
    grads = jax.grad(self.objective)(params, trajectories, signals, logp_ref)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    return jax.tree.map(lambda p, g: p + lr * g, params, grads)

  def readapt(self, params, inner, inner_signals):
    """One task's inner steps on its sampled trajectories."""
    for trajectories, signals in zip(inner, inner_signals):
      params = self.ascent(params, trajectories, signals, self.inner_lr,
                           self.first_order)
    return params

  def rollouts(self, params, tasks, key) -> Batch:
    """Every task's inner and query trajectories and their signals, the
    inner ones sampled step by step as the policy adapts."""
    def one_task(goal, task_key):
      inner_key, query_key = jax.random.split(task_key)
      current, inner, inner_signals = params, [], []
      for key_k in jax.random.split(inner_key, self.inner_steps):
        trajectories = self.sample(current, goal, key_k)
        signals = self.signals(trajectories)
        inner.append(trajectories)
        inner_signals.append(signals)
        current = self.ascent(current, trajectories, signals, self.inner_lr)
      query = self.sample(current, goal, query_key)
      return Batch(tuple(inner), tuple(inner_signals), query,
                   self.signals(query))

    goals_T = tasks.support
    return jax.vmap(one_task)(goals_T, jax.random.split(key,
                                                        goals_T.shape[0]))

  def meta_objective(self, params, batch: Batch, logp_ref_T=None):
    """The mean over tasks of the estimator on the query trajectories of
    the policy readapted from `params` (ratio to `logp_ref_T` if given)."""
    def one_task(inner, inner_signals, query, query_signals, logp_ref):
      adapted = self.readapt(params, inner, inner_signals)
      return self.objective(adapted, query, query_signals, logp_ref)
    return jnp.mean(jax.vmap(one_task)(batch.inner, batch.inner_signals,
                                       batch.query, batch.query_signals,
                                       logp_ref_T))

  def metrics(self, batch: Batch, objective):
    # The estimator's value is no measure of progress (standardised
    # advantages sum to about zero): meta_loss is minus the adapted return.
    post_return = jnp.mean(jax.vmap(mean_return)(batch.query))
    return {"pre_return": jnp.mean(jax.vmap(mean_return)(batch.inner[0])),
            "post_return": post_return, "meta_loss": -post_return,
            "surrogate_objective": objective}


def mean_return(trajectories):
  """Mean undiscounted return per trajectory."""
  return jnp.mean(jnp.sum(trajectories.rewards * trajectories.mask, axis=1))


def policy_params(config, meta_params):
  """The policy's parameters within the meta-parameters (ProMP's also hold
  its Adam state and KL coefficients)."""
  if config.algorithm.outer_step == "promp":
    return meta_params["policy"]
  return meta_params


def init_meta_params(config, problem, model_params):
  del problem
  if config.algorithm.outer_step == "promp":
    return {"policy": model_params, "promp_state": rl_outer.init_promp_state(
        model_params, config.inner.steps, config.algorithm.promp_kl_coeff)}
  return model_params


def make_meta_grad(config, problem):
  """`meta_grad_fn(params, tasks, key, step)`: rollouts, adaptation and the
  meta-gradient (or the outer step's change, negated) of every task in one
  program, vmapped over tasks."""
  parts = _Parts(config, problem)
  settings = config.algorithm
  negate = lambda tree: jax.tree.map(jnp.negative, tree)

  def gradient_step(params, tasks, key, step):
    del step
    batch = parts.rollouts(params, tasks, key)
    value, grads = jax.value_and_grad(parts.meta_objective)(params, batch)
    return negate(grads), parts.metrics(batch, value)

  def pretrain_step(params, tasks, key, step):
    del step
    goals_T = tasks.support
    keys = jax.random.split(key, goals_T.shape[0])
    trajectories_T = jax.vmap(parts.sample, (None, 0, 0))(params, goals_T,
                                                          keys)
    signals_T = jax.vmap(parts.signals)(trajectories_T)
    objective = lambda p: jnp.mean(jax.vmap(parts.objective, (None, 0, 0))(
        p, trajectories_T, signals_T))
    value, grads = jax.value_and_grad(objective)(params)
    pre_return = jnp.mean(jax.vmap(mean_return)(trajectories_T))
    return negate(grads), {"pre_return": pre_return, "meta_loss": -pre_return,
                           "surrogate_objective": value}

  def trpo_step(params, tasks, key, step):
    del step
    batch = parts.rollouts(params, tasks, key)
    change, metrics = rl_outer.trpo_step(parts, settings, params, batch)
    return negate(change), metrics

  def promp_step(meta_params, tasks, key, step):
    del step
    params, state = meta_params["policy"], meta_params["promp_state"]
    batch = parts.rollouts(params, tasks, key)
    new_params, new_state, metrics = rl_outer.promp_step(
        parts, settings, params, state, batch)
    change = {"policy": jax.tree.map(jnp.subtract, new_params, params),
              "promp_state": jax.tree.map(jnp.subtract, new_state, state)}
    return negate(change), metrics

  if settings.pretrain:
    return pretrain_step
  return {"gradient": gradient_step, "trpo": trpo_step,
          "promp": promp_step}[settings.outer_step]


def adaptation_returns(config, problem, params, goals_G, key, num_steps: int):
  """Mean return of each goal's trajectories before each of `num_steps`
  test-time adaptation steps and after the last, `(G, num_steps + 1)`."""
  parts = _Parts(config, problem)
  rates = config.algorithm.eval_lrs

  def one_goal(goal, goal_key):
    current, returns = params, []
    for k, key_k in enumerate(jax.random.split(goal_key, num_steps + 1)):
      trajectories = parts.sample(current, goal, key_k,
                                  config.algorithm.eval_trajectories)
      returns.append(mean_return(trajectories))
      if k < num_steps:
        current = parts.ascent(current, trajectories,
                               parts.signals(trajectories),
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
    returns = adaptation_returns(config, problem,
                                 policy_params(config, meta_params),
                                 tasks.support, key, max(steps))
    results[name] = summarize_curves({"return": returns}, steps)
  return results


ALGORITHM = Algorithm(
    name="maml_rl", family="optimization", config_class=MamlRLConfig,
    make_meta_grad=make_meta_grad, check=check,
    init_meta_params=init_meta_params, evaluate=evaluate,
    eval_optimizer=lambda config: (
        f"policy-gradient ascent at algorithm.eval_lrs="
        f"{config.algorithm.eval_lrs}"))
