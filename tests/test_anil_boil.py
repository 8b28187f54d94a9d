"""ANIL and BOIL: only the selected part adapts; the rest still learns."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax as mj
from algorithm_problems import tiny_sine_config
from metajax.training import trainer as train
from metajax.algorithms import _partition, anil, boil
from metajax.training.config import ConfigError, override


def _setup(algorithm, **changes):
  settings = {"algorithm": algorithm, "inner.steps": 2, "inner.lr": 0.1,
              "model.hidden_sizes": (8, 8), "model.activation": "tanh"}
  config = tiny_sine_config({**settings, **changes})
  _, _, problem = train.build_problem(config)
  params = problem.init_params(jax.random.key(0))
  tasks = problem.train_sampler(jax.random.key(1))
  return config, problem, params, tasks


def test_default_head_is_the_last_dense_layer():
  config, problem, _, _ = _setup("anil", **{"model.hidden_sizes": (2,) * 11})
  # Dense_11, not Dense_9: found by application order, not by sorted name.
  assert _partition.find_head(config, problem) == "Dense_11"
  named = override(config, {"algorithm.head": "Dense_3"})
  assert _partition.find_head(named, problem) == "Dense_3"


@pytest.mark.parametrize("algorithm,module", [("anil", anil), ("boil", boil)])
def test_frozen_part_is_bit_identical_after_adaptation(algorithm, module):
  config, problem, params, tasks = _setup(algorithm)
  init, inner = module.eval_adaptation(config, problem, params)
  support = jax.tree.map(lambda leaf: leaf[0], tasks.support)
  adapted = jax.jit(lambda p: inner.run(p, support, num_steps=3).params)(init)
  for name in ("Dense_0", "Dense_1", "Dense_2"):
    changed = [not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(adapted["params"][name]),
        jax.tree.leaves(params["params"][name]))]
    adapts = (name == "Dense_2") == (algorithm == "anil")
    assert all(changed) if adapts else not any(changed), name


@pytest.mark.parametrize("algorithm,module", [("anil", anil), ("boil", boil)])
def test_meta_gradient_matches_masked_maml_and_reaches_frozen_part(
    x64, algorithm, module):
  config, problem, params, tasks = _setup(algorithm)
  params = jax.tree.map(lambda p: p.astype(np.float64), params)
  grads, _ = jax.jit(module.make_meta_grad(config, problem))(
      params, tasks, jax.random.key(0), jnp.zeros((), jnp.int32))
  # Reference: MAML on the whole tree, frozen leaves' updates zeroed.
  _, masked = module.eval_adaptation(config, problem, params)
  reference = jax.jit(jax.grad(lambda p: mj.meta_objective(
      p, tasks, dataclasses.replace(masked, num_steps=2))[0]))(params)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
  for name in ("Dense_0", "Dense_1", "Dense_2"):  # every part gets a signal
    assert all(np.any(g != 0) for g in jax.tree.leaves(grads["params"][name]))


def test_partitions_that_adapt_nothing_or_everything_raise():
  with pytest.raises(ConfigError, match=r"'algorithm\.head'"):  # head = all
    train.build_run(tiny_sine_config(algorithm="anil", model__hidden_sizes=()))
  with pytest.raises(ConfigError, match=r"'algorithm\.head'.*Dense_7"):
    train.build_run(tiny_sine_config(algorithm="anil",
                                     algorithm__head="Dense_7"))
  config, problem, _, _ = _setup("anil")
  with pytest.raises(ConfigError, match="adapts 0 of 6"):
    _partition.check_partition(config, problem, lambda path, leaf: False,
                               "custom")
  # An MLP with no hidden layers has no body for BOIL to adapt: the error
  # names the field to change, before anything compiles.
  with pytest.raises(ConfigError, match=r"'model\.hidden_sizes'"):
    train.build_problem(tiny_sine_config(algorithm="boil",
                                         model__hidden_sizes=()))


def test_split_and_merge_round_trip():
  _, _, params, _ = _setup("anil")
  mask = _partition.mask_of(params, _partition.head_partition("Dense_2", True))
  adapted, frozen = _partition.split(params, mask)
  assert len(jax.tree.leaves(adapted)) == 2
  assert len(jax.tree.leaves(frozen)) == 4
  merged = _partition.merge(adapted, frozen)
  assert jax.tree.structure(merged) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(merged), jax.tree.leaves(params)):
    assert a is b
