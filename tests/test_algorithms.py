"""Every algorithm runs end to end from a config; bad settings fail early."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algorithm_problems import take_steps, tiny_sine_config
from metajax import algorithms
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override

SETTINGS = {  # small but exercising each algorithm's own options
    "mamlpp": {"inner.steps": 2, "algorithm.msl_anneal_steps": 2,
               "algorithm.first_order_until": 1, "outer.schedule": "cosine"},
    "reptile": {"inner.steps": 2, "outer.optimizer": "sgd", "outer.lr": 0.5,
                "algorithm.serial": True},
    "imaml": {"inner.steps": 3, "algorithm.cg_steps": 2},
}
# Classification only (their own tests train them end to end on synthetic
# Gaussian clusters or Omniglot), and reinforcement learning.
NOT_FOR_SINE = {"protonet": "classification", "matching": "classification",
                "snail": "classification", "maml_rl": "reinforcement"}
SINE_ALGORITHMS = [a for a in algorithms.available() if a not in NOT_FOR_SINE]


@pytest.mark.parametrize("name", sorted(NOT_FOR_SINE))
def test_algorithms_not_for_regression_refuse_sine_before_compiling(name):
  with pytest.raises(ConfigError, match="algorithm|task"):
    train.build_run(tiny_sine_config({"algorithm": name}))


@pytest.mark.parametrize("name", SINE_ALGORITHMS)
def test_a_few_meta_steps_give_finite_metrics(name):
  config = tiny_sine_config({"algorithm": name, **SETTINGS.get(name, {})})
  run = train.build_run(config)
  state, history = take_steps(run, 3)
  metrics = history[-1]
  if name == "mamlpp":  # the meta-step hands it the step: MSL anneals
    np.testing.assert_allclose([m["msl_last_weight"] for m in history],
                               [0.5, 0.75, 1.0])
  assert int(state.step) == 3 and int(state.nonfinite_count) == 0
  assert all(np.isfinite(v) for v in jax.tree.leaves(metrics)), metrics
  assert jax.tree.structure(state.params) == jax.tree.structure(run.state.params)
  assert run.step_fn.cache_size() == 1
  algorithm = algorithms.get(name)
  assert run.algorithm is algorithm
  if algorithm.evaluate is None:
    # Test-time adaptation with the algorithm's own rule.
    init, inner = algorithm.eval_adaptation(config, run.problem, state.params)
    task = jax.tree.map(lambda l: l[0], run.problem.train_sampler(
        jax.random.key(5)))
    def support_and_query_losses(p):
      adapted = inner.run(p, task.support, num_steps=2).params
      return (inner.loss_fn(p, task.support),
              inner.loss_fn(adapted, task.support),
              inner.loss_fn(adapted, task.query))
    before, after, query = jax.jit(support_and_query_losses)(init)
    assert np.isfinite(query) and np.isfinite(before)
    assert after < before  # the rule adapts: it fits the support set


@pytest.mark.parametrize("overrides,field", [
    ({"algorithm": "reptile", "algorithm.serial": "true"}, "algorithm.serial"),
    ({"algorithm": "metasgd", "inner.optimizer": "adam"}, "inner.optimizer"),
    ({"algorithm": "mamlpp", "inner.optimizer": "adam"}, "inner.optimizer"),
    ({"algorithm": "mamlpp", "algorithm.msl_anneal_steps": "-1"},
     "algorithm.msl_anneal_steps"),
    ({"algorithm": "mamlpp", "algorithm.first_order_until": "-5"},
     "algorithm.first_order_until"),
    ({"algorithm": "imaml", "algorithm.lam": "0"}, "algorithm.lam"),
    ({"algorithm": "imaml", "algorithm.cg_steps": "0"}, "algorithm.cg_steps"),
    ({"algorithm": "imaml", "algorithm.cg_damping": "-1"},
     "algorithm.cg_damping"),
    ({"algorithm": "reptile", "algorithm.inner_batch_size": "-1"},
     "algorithm.inner_batch_size"),
    ({"inner.optimizer": "adam", "inner.adam_b1": "1"}, "inner.adam_b1"),
    ({"algorithm": "protonet"}, "algorithm"),
    ({"outer.schedule": "step"}, "outer.schedule"),
])
def test_bad_algorithm_settings_raise_config_error_naming_the_field(
    overrides, field):
  with pytest.raises(ConfigError, match=re.escape(f"'{field}'")):
    train.build_problem(override(tiny_sine_config(), overrides))


@pytest.mark.parametrize("schedule,rates", [
    ("constant", [1.0, 1.0, 1.0, 1.0]),
    ("linear", [1.0, 0.75, 0.5, 0.25]),
    ("cosine", [1.0, 0.853553, 0.5, 0.146447]),
])
def test_outer_schedule_decays_the_outer_rate(schedule, rates):
  config = tiny_sine_config({"outer.optimizer": "sgd", "outer.lr": 1.0,
                             "outer.num_meta_steps": 4,
                             "outer.schedule": schedule})
  optimizer = train.make_outer_optimizer(config)
  params = {"w": jnp.zeros(())}
  state, seen = optimizer.init(params), []
  for _ in range(4):
    updates, state = optimizer.update({"w": jnp.ones(())}, state, params)
    seen.append(-float(updates["w"]))
  np.testing.assert_allclose(seen, rates, rtol=1e-5)
