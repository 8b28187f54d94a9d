"""The CPU fast paths and the portable formulations train the same model.

`metajax.backend.for_backend` picks the formulations once per run; the CPU
test suite runs both selections through the whole trainer, so the program a
GPU runs (the portable one) is tested here too.
"""
import dataclasses

import jax
import numpy as np
import pytest

from algorithm_problems import take_steps, tiny_sine_config
from conftest import data_dir_or_none
from experiments import omniglot_5way1shot
from metajax import backend
from metajax.settings import ConfigError
from metajax.training import trainer
from metajax.training.config import override, resolve_formulations


def _train(config, steps):
  run = trainer.build_run(config)
  state, history = take_steps(run, steps)
  return run, state, history[-1]


def test_presets_resolve_by_backend():
  config = tiny_sine_config()
  assert resolve_formulations(config, "cpu") == backend.CPU
  assert resolve_formulations(config, "gpu") == backend.PORTABLE
  portable = override(config, {"formulations.preset": "portable"})
  assert resolve_formulations(portable, "cpu") == backend.PORTABLE
  mixed = override(config, {"formulations.conv": "reference",
                            "formulations.prefetch_tasks": "false"})
  assert resolve_formulations(mixed, "cpu") == dataclasses.replace(
      backend.CPU, conv="reference", prefetch_tasks=False)


def test_forward_mode_algorithms_get_the_plain_product():
  imaml = tiny_sine_config(algorithm="imaml")
  assert resolve_formulations(imaml, "cpu").dense == "plain"
  with pytest.raises(ConfigError, match="formulations.dense"):
    resolve_formulations(override(imaml, {"formulations.dense": "fast"}),
                         "cpu")


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_sine_trains_the_same_under_both_presets(algorithm):
  results = {}
  for preset in ("cpu", "portable"):
    config = tiny_sine_config(algorithm=algorithm,
                              formulations__preset=preset)
    run, state, metrics = _train(config, steps=3)
    assert run.formulations == (backend.CPU if preset == "cpu"
                                else backend.PORTABLE)
    assert run.prefetch == (preset == "cpu")
    results[preset] = (state.params, float(metrics["meta_loss"]))
  fast, portable = results["cpu"], results["portable"]
  np.testing.assert_allclose(fast[1], portable[1], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(fast[0]), jax.tree.leaves(portable[0])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_results_record_the_formulations(tmp_path):
  config = tiny_sine_config(formulations__preset="portable",
                            outer__num_meta_steps=10, run__log_every=10)
  results = trainer.train(config, str(tmp_path / "run"), progress=False)
  assert results["backend"] == jax.default_backend()
  assert results["formulations"] == dataclasses.asdict(backend.PORTABLE)


@pytest.mark.skipif(data_dir_or_none() is None, reason="no Omniglot data")
def test_omniglot_step_is_the_same_under_both_presets():
  base = override(omniglot_5way1shot.get_config(), {
      "task.data_dir": data_dir_or_none(), "model.strided": False,
      "model.width": 8, "outer.meta_batch_size": 2,
      "run.pre_metrics": False})
  outcome = {}
  for preset in ("cpu", "portable"):
    run, state, metrics = _train(
        override(base, {"formulations.preset": preset}), steps=2)
    outcome[preset] = (state.params, float(metrics["meta_loss"]))
  np.testing.assert_allclose(outcome["cpu"][1], outcome["portable"][1],
                             rtol=1e-4)
  for a, b in zip(jax.tree.leaves(outcome["cpu"][0]),
                  jax.tree.leaves(outcome["portable"][0])):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
