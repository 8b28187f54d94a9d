"""Runs saved by the previous release (flat schema-1 config.json) still load,
re-evaluate to the same numbers and resume to the same parameters.

tests/fixtures/results/v1_sine_run is a run directory written by the
previous release: `sine` with 8-8 hidden units, trained 40 meta-steps with
checkpoints at 20 and 40. v1_sine_run_60 holds params.msgpack and
results.json of that release's uninterrupted 60-step run of the same config.
The tests work on copies; the fixtures are never written.

On the machine that wrote them, the current code resumes that run to the
uninterrupted run's parameters bit for bit. On another CPU XLA's kernels may
round differently in the last bit, and 20 further steps carry that along, so
the comparison allows float32 rounding (`RESUME_RTOL`), far below any change
of the computation (one step moves the parameters by about 1e-3).
"""
import glob
import hashlib
import json
import math
import os
import shutil

import jax
import numpy as np
import pytest
from flax import serialization

from conftest import REPO_ROOT
from metajax.training import cli as main
from metajax.training.config import from_dict

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "results"
V1_RUN = FIXTURES / "v1_sine_run"
V1_RUN_60 = FIXTURES / "v1_sine_run_60"
RESUME_RTOL = 1e-5
SAVED_GPU_CONFIGS = sorted(glob.glob(str(
    REPO_ROOT / "experiments" / "results" / "nvidia-h200" / "*" /
    "config.json")))


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _digest(directory) -> dict:
  """{relative path: sha256} of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = hashlib.sha256(
            f.read()).hexdigest()
  return out


@pytest.fixture
def v1_copy(tmp_path):
  """A copy of the schema-1 run; checks afterwards that the fixture is
  untouched."""
  before = _digest(V1_RUN)
  yield str(shutil.copytree(V1_RUN, tmp_path / "v1_sine_run"))
  assert _digest(V1_RUN) == before, "the fixture was modified"


def _assert_evaluations_close(actual: dict, expected: dict):
  """Same settings, steps and statistics, each equal to 1e-6 relative."""
  assert set(actual) == set(expected)
  for setting, curve in expected.items():
    assert set(actual[setting]) == set(curve), setting
    for step, stats in curve.items():
      # Fields added since (num_diverged) may be there too.
      assert set(stats) <= set(actual[setting][step]), (setting, step)
      assert set(actual[setting][step]) - set(stats) <= {"num_diverged"}
      for name, value in stats.items():
        got = actual[setting][step][name]
        assert math.isclose(got, value, rel_tol=1e-6, abs_tol=0.0), (
            setting, step, name, got, value)


def _params(path):
  with open(path, "rb") as f:
    return serialization.msgpack_restore(f.read())


def test_flat_v1_config_migrates_to_sections():
  config = from_dict(_read_json(V1_RUN / "config.json"))
  assert config.task.NAME == "sine" and config.algorithm.NAME == "maml"
  assert config.task.support_points == 10
  assert config.model.hidden_sizes == (8, 8)
  assert config.outer.num_meta_steps == 40
  assert config.run.checkpoint_every == 20
  assert config.run.keep_checkpoints == 2
  assert config.eval.num_tasks == 20 and config.eval.inner_steps == (1, 2)
  # conv/dense 'auto' became the preset's choice.
  assert config.formulations.conv == config.formulations.dense == ""


def test_eval_only_on_a_v1_run_reproduces_its_results(v1_copy, capsys):
  assert main.main(["sine", "--eval_only", "--run_dir", v1_copy]) == 0
  again = _read_json(os.path.join(v1_copy, "eval_results.json"))
  reported = _read_json(V1_RUN / "results.json")
  _assert_evaluations_close(again["evaluation"], reported["evaluation"])


def test_resume_of_a_v1_run_equals_the_uninterrupted_run(v1_copy, capsys):
  assert main.main(["--resume", "--run_dir", v1_copy,
                    "--outer.num_meta_steps=60", "--no_progress"]) == 0
  resumed = _params(os.path.join(v1_copy, "params.msgpack"))
  expected = _params(V1_RUN_60 / "params.msgpack")
  assert (jax.tree.structure(resumed) == jax.tree.structure(expected))
  for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(expected)):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=RESUME_RTOL, atol=1e-7)
  # The log continues from the checkpoint, and the run ends where the
  # uninterrupted one did.
  steps = [json.loads(line)["step"]
           for line in open(os.path.join(v1_copy, "metrics.jsonl"))]
  assert steps == [10, 20, 30, 40, 50, 60]
  results = _read_json(os.path.join(v1_copy, "results.json"))
  uninterrupted = _read_json(V1_RUN_60 / "results.json")
  assert results["meta_steps_done"] == 60
  assert math.isclose(results["final_metrics"]["meta_loss"],
                      uninterrupted["final_metrics"]["meta_loss"],
                      rel_tol=RESUME_RTOL)
  _assert_evaluations_close(results["evaluation"],
                            uninterrupted["evaluation"])
  # The config is rewritten in schema 2; the flat original is kept beside.
  saved = _read_json(os.path.join(v1_copy, "config.json"))
  assert saved["schema_version"] == 2
  assert saved["experiment"] == "sine"
  assert saved["outer"]["num_meta_steps"] == 60
  assert saved["model"]["hidden_sizes"] == [8, 8]
  assert (_read_json(os.path.join(v1_copy, "config.schema1.json"))
          == _read_json(V1_RUN / "config.json"))


def test_saved_gpu_runs_found():
  assert len(SAVED_GPU_CONFIGS) >= 4


@pytest.mark.parametrize("path", SAVED_GPU_CONFIGS,
                         ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_saved_gpu_run_configs_load(path):
  flat = _read_json(path)
  assert "schema_version" not in flat  # schema 1, as written on the GPU
  config = from_dict(flat)
  assert config.task.NAME == flat["task"] == "omniglot"
  assert config.algorithm.NAME == flat["algorithm"]
  assert config.task.ways == flat["num_ways"]
  assert config.task.shots == flat["num_support"]
  assert config.task.queries == flat["num_query"]
  assert config.task.eval_queries == flat["eval_num_query"]
  assert config.model.NAME == "conv4"
  assert config.model.strided == (flat["model"] == "conv4_strided")
  assert config.inner.steps == flat["inner_steps"]
  assert config.inner.lr == flat["inner_lr"]
  assert config.outer.meta_batch_size == flat["meta_batch_size"]
  assert config.outer.num_meta_steps == flat["num_meta_steps"]
  assert config.outer.steps_per_call == flat["steps_per_call"]
  assert config.outer.max_train_seconds == flat["max_train_seconds"]
  assert config.eval.inner_steps == tuple(flat["eval_inner_steps"])
  assert config.eval.num_tasks == flat["eval_num_tasks"]
  assert config.run.checkpoint_every == flat["checkpoint_every"]
  assert config.run.pre_metrics == flat["pre_metrics"]
  assert config.formulations.conv == flat["conv"]
