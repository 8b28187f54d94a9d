"""What a run directory holds, checked through real (tiny) runs: resuming
with overrides, a corrupted newest checkpoint, checkpoint retention, the
documented fields of metrics.jsonl and results.json, non-finite steps.

Most tests share one 40-step sine run (`base_run`) and work on copies of it.
The sharded non-finite check runs this file as a worker in a fresh process
with 2 fake CPU devices (the device count is fixed when JAX starts):

  XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
    python tests/test_run_files.py OUT.json
"""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from conftest import REPO_ROOT
from metajax import tasks
from metajax.tasks import regression
from metajax.training import cli, run_io
from metajax.training import trainer as train
from metajax.training.checkpoint import Checkpointer
from metajax.training.config import (
    ConfigError, override, resolve_formulations)
from test_resume import _corrupt_newest, _records

TINY = {"model.hidden_sizes": "8", "outer.meta_batch_size": "4",
        "task.support_points": "5", "task.query_points": "5",
        "outer.steps_per_call": "1", "run.log_every": "10",
        "eval.num_tasks": "10", "task.eval_query_points": "5",
        "task.eval_shots": "5", "eval.inner_steps": "1,2"}
BASE_STEPS = 40
# outer.lr is not sine's (1e-3), to tell the saved config from the
# experiment's on resume.
BASE_ARGS = (["sine", "--no_progress", f"--outer.num_meta_steps={BASE_STEPS}",
              "--outer.lr=0.003", "--run.checkpoint_every=10",
              "--run.keep_checkpoints=2"]
             + [f"--{name}={value}" for name, value in TINY.items()])
METRICS_FIELDS = {"step", "meta_loss", "pre_loss", "post_loss", "grad_norm",
                  "nonfinite", "elapsed_seconds"}


def _read_json(run_dir, name):
  return run_io.read_json(os.path.join(run_dir, name))


def _read_bytes(run_dir, name):
  with open(os.path.join(run_dir, name), "rb") as f:
    return f.read()


def _saved_params(run_dir):
  return serialization.msgpack_restore(_read_bytes(run_dir, "params.msgpack"))


def _checkpoints(run_dir):
  return sorted(int(d) for d in os.listdir(os.path.join(run_dir, "checkpoints"))
                if d.isdigit())


def _template(run_dir):
  """An initial MetaState of the run's saved config (nothing compiles)."""
  return train.build_run(cli.saved_config(run_dir)[1]).state


def _without_time(records):
  return [{k: v for k, v in r.items() if k != "elapsed_seconds"}
          for r in records]


def _no_figures():
  """The runs here skip the figures (~2.5 s a run on a 2-core CPU); the
  files they make are checked in test_cli_and_config.py."""
  return mock.patch.object(train, "write_plots", lambda *args: None)


@pytest.fixture(autouse=True)
def no_figures():
  with _no_figures():
    yield


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  """A finished 40-step run: checkpoints every 10 steps, the last 2 kept."""
  run_dir = str(tmp_path_factory.mktemp("base") / "run")
  with _no_figures():
    assert cli.main(BASE_ARGS + [f"--run_dir={run_dir}"]) == 0
  return run_dir


@pytest.fixture
def run_copy(base_run, tmp_path):
  """A copy of `base_run` the test may change."""
  return shutil.copytree(base_run, str(tmp_path / "run"))


# ------------------------------------------------------------ retention
def test_only_the_newest_keep_checkpoints_are_kept_and_the_last_is_final(
    base_run):
  assert _checkpoints(base_run) == [30, 40]  # of the saves at 10, ..., 40
  checkpointer = Checkpointer(os.path.join(base_run, "checkpoints"))
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # both restore without a complaint
    older = checkpointer.restore(_template(base_run), step=30)
    final = checkpointer.restore(_template(base_run))
  checkpointer.close()
  assert int(older.step) == 30 and int(final.step) == BASE_STEPS
  # The final checkpoint holds the saved final parameters.
  saved = jax.tree.leaves(_saved_params(base_run))
  for got, want in zip(jax.tree.leaves(final.params), saved, strict=True):
    np.testing.assert_array_equal(got, want)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(older.params), saved))


# -------------------------------------------------- documented run files
def test_metrics_and_results_hold_the_documented_fields(base_run):
  records = _records(base_run)
  assert [r["step"] for r in records] == [10, 20, 30, 40]
  for record in records:
    assert METRICS_FIELDS <= set(record), record
    for name in ("meta_loss", "pre_loss", "post_loss", "grad_norm"):
      assert math.isfinite(record[name]) and record[name] > 0, (name, record)
    assert record["nonfinite"] == 0
  elapsed = [r["elapsed_seconds"] for r in records]
  assert 0 < elapsed[0] and elapsed == sorted(elapsed)

  results = _read_json(base_run, "results.json")
  config = cli.saved_config(base_run)[1]
  assert results["experiment"] == "sine"
  assert results["meta_steps_done"] == BASE_STEPS
  assert results["stopped_by_time_limit"] is False
  assert results["nonfinite_steps"] == 0
  assert results["final_metrics"] == records[-1]
  assert results["backend"] == jax.default_backend()
  assert results["device"] == jax.devices()[0].device_kind
  assert results["formulations"] == dataclasses.asdict(
      resolve_formulations(config))
  assert "test_time_optimizer" in results
  assert 0 < results["compile_seconds"] < results["train_seconds"]
  assert results["meta_steps_per_second"] > 0
  # The meta-test: K=5 only (task.eval_shots), before and after 1 and 2
  # steps (eval.inner_steps), each with its mean, 95% interval and median.
  assert list(results["evaluation"]) == ["K=5"]
  curve = results["evaluation"]["K=5"]
  assert list(curve) == ["step_0", "step_1", "step_2"]
  for stats in curve.values():
    assert set(stats) == {"mean", "ci95", "median", "num_nonfinite",
                          "num_diverged"}
    assert stats["num_nonfinite"] == 0 and stats["num_diverged"] == 0
    for name in ("mean", "ci95", "median"):
      assert math.isfinite(stats[name]) and stats[name] > 0, (name, stats)


# ------------------------------------------------------------ resuming
def test_resume_applies_overrides_on_top_of_the_saved_config(run_copy):
  before = _records(run_copy)
  assert cli.main(["--resume", f"--run_dir={run_copy}", "--no_progress",
                   "--outer.num_meta_steps=60"]) == 0
  saved = _read_json(run_copy, "config.json")
  assert saved["experiment"] == "sine"
  assert saved["outer"]["num_meta_steps"] == 60  # the override
  assert saved["outer"]["lr"] == 0.003  # the run's own, not the experiment's
  assert saved["model"]["hidden_sizes"] == [8]
  records = _records(run_copy)
  assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60]
  assert records[:4] == before  # the first run's lines, kept as they were
  assert _read_json(run_copy, "results.json")["meta_steps_done"] == 60
  assert _checkpoints(run_copy) == [50, 60]


def test_resume_refuses_a_run_of_another_experiment(run_copy, capsys):
  files = {name: _read_bytes(run_copy, name)
           for name in ("config.json", "metrics.jsonl", "params.msgpack")}
  assert cli.main(["sine_imaml", "--resume", f"--run_dir={run_copy}",
                   "--no_progress"]) == 2
  error = capsys.readouterr().err.strip()
  assert error == (f"error: --resume: {run_copy!r} holds a run of experiment "
                   "'sine', not 'sine_imaml'")
  assert {name: _read_bytes(run_copy, name) for name in files} == files
  assert cli.main(["--resume", "--no_progress"]) == 2
  assert "--resume needs --run_dir" in capsys.readouterr().err


def test_corrupted_newest_checkpoint_resumes_from_the_previous_one(
    base_run, run_copy):
  assert _corrupt_newest(os.path.join(run_copy, "checkpoints")) == BASE_STEPS
  with pytest.warns(UserWarning, match=f"step {BASE_STEPS} .* corrupted"), \
       pytest.warns(UserWarning, match="unreadable_checkpoints"):
    assert cli.main(["--resume", f"--run_dir={run_copy}",
                     "--no_progress"]) == 0
  # The log was cut to step 30 and continued: step 40 once, with the values
  # the uninterrupted run logged; the parameters are the same, bit for bit.
  assert _without_time(_records(run_copy)) == _without_time(
      _records(base_run))
  assert _read_bytes(run_copy, "params.msgpack") == _read_bytes(
      base_run, "params.msgpack")
  # The corrupted checkpoint was moved aside, not deleted, and replaced by a
  # valid one of the new run.
  assert _checkpoints(run_copy) == [30, 40]
  assert os.listdir(os.path.join(run_copy, "unreadable_checkpoints")) == [
      str(BASE_STEPS)]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    checkpointer = Checkpointer(os.path.join(run_copy, "checkpoints"))
    restored = checkpointer.restore(_template(run_copy))
  checkpointer.close()
  assert int(restored.step) == BASE_STEPS


# ------------------------------------------------------ config relations
@pytest.mark.parametrize("overrides,fields", [
    ({"run.log_every": "10", "run.checkpoint_every": "15"},
     ("'run.checkpoint_every' (15)", "'run.log_every' (10)")),
    ({"outer.steps_per_call": "4", "run.log_every": "10"},
     ("'run.log_every' (10)", "'outer.steps_per_call' (4)")),
    ({"outer.steps_per_call": "4", "run.log_every": "8",
      "outer.num_meta_steps": "10"},
     ("'outer.num_meta_steps' (10)", "'outer.steps_per_call' (4)")),
])
def test_field_relations_are_errors_naming_both_fields(overrides, fields):
  with pytest.raises(ConfigError) as error:
    override(cli.load_experiment("sine"), overrides)
  for field in fields:
    assert field in str(error.value)


def test_checkpoint_every_relation_on_the_command_line(tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert cli.main(["sine", "--run.log_every=20", "--run.checkpoint_every=30",
                   f"--run_dir={run_dir}", "--no_progress"]) == 2
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and error.startswith("error: ")
  assert "'run.checkpoint_every' (30)" in error
  assert "'run.log_every' (20)" in error
  assert not run_dir.exists()
  # 0 (only at the end) goes with any log_every.
  config = override(cli.load_experiment("sine"),
                    {"run.log_every": "30", "run.checkpoint_every": "0"})
  assert config.run.checkpoint_every == 0


# ------------------------------------------------------ non-finite steps
NONFINITE_STEPS = 20
POISON_RATE = 0.25


def _poisoned_sine():
  """The sine domain whose training tasks, at some steps (a fixed choice per
  step key), have NaN query targets: a non-finite loss at known steps."""
  def build(config, formulations):
    problem = regression.build(config, formulations)

    def train_sampler(key):
      batch = problem.train_sampler(key)
      x, y = batch.query
      poisoned = jax.random.bernoulli(jax.random.fold_in(key, 77), POISON_RATE)
      return batch._replace(query=(x, jnp.where(poisoned, jnp.nan, y)))

    return dataclasses.replace(problem, train_sampler=train_sampler)

  return dataclasses.replace(regression.SINE, build=build)


def _leaves(tree):
  return [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(tree)]


def nonfinite_facts(policy: str, num_devices: int, run_dir: str) -> dict:
  """Trains the poisoned sine task under `policy` and returns, as plain
  data (a worker process sends it as JSON), what the run wrote beside what
  the run's own compiled meta-step gives, stepped one step at a time from
  the initial state: the params before each step and its non-finite flag."""
  config = override(cli.load_experiment("sine"), {
      **TINY, "outer.num_meta_steps": NONFINITE_STEPS,
      "outer.nonfinite_policy": policy, "run.num_devices": num_devices})
  runs, build_run = [], train.build_run

  def recording_build_run(config):
    runs.append(build_run(config))
    return runs[-1]

  message = None
  with mock.patch.dict(tasks.REGISTRY, {"sine": _poisoned_sine()}), \
       mock.patch.object(train, "build_run", recording_build_run):
    try:
      train.train(config, run_dir, experiment="sine", progress=False)
    except train.NonFiniteError as error:
      message = str(error)
    run, = runs
    state = build_run(config).state
    initial = _leaves(state.params)
    devices = len(jax.tree.leaves(state.params)[0].sharding.device_set)
    batch = run.first_tasks(state)
    before, flags = [], []
    for _ in range(NONFINITE_STEPS):
      before.append(_leaves(state.params))
      state, batch, metrics = run.call(state, batch)
      flags.append(int(metrics["nonfinite"]))
  results_path = os.path.join(run_dir, "results.json")
  return {
      "message": message, "devices": devices, "initial": initial,
      "before": before, "after": _leaves(state.params), "flags": flags,
      "saved": _leaves(_saved_params(run_dir)),
      "records": [[r["step"], r["nonfinite"]] for r in _records(run_dir)],
      "results": (_read_json(run_dir, "results.json")
                  if os.path.exists(results_path) else None)}


def _assert_leaves_equal(actual, expected):
  assert len(actual) == len(expected)
  for a, e in zip(actual, expected):
    np.testing.assert_array_equal(np.float32(a), np.float32(e))


def _check_nonfinite(facts: dict, policy: str):
  flags = facts["flags"]
  first_bad = flags.index(1)
  # The poisoning (fixed keys) gives good steps, then bad and good ones
  # mixed, so that the last good state is not the initial one and "skip"
  # has good steps to apply after a bad one.
  assert first_bad >= 1 and 0 in flags[first_bad + 1:], flags
  # Every logged line carries its step's flag.
  assert facts["records"], "nothing logged"
  for step, flag in facts["records"]:
    assert step % 10 == 0 and flag == flags[step - 1], (step, flag, flags)
  if policy == "stop":
    assert f"non-finite loss or gradient at meta-step {first_bad};" in (
        facts["message"] or "")
    assert facts["results"] is None
    # The saved params are the state after the good steps, not the initial.
    _assert_leaves_equal(facts["saved"], facts["before"][first_bad])
    assert facts["saved"] != facts["initial"]
    assert facts["records"][-1][0] > first_bad  # the line that stopped it
  else:
    assert facts["message"] is None
    results = facts["results"]
    assert results["meta_steps_done"] == NONFINITE_STEPS
    assert results["nonfinite_steps"] == sum(flags)
    assert results["final_metrics"]["nonfinite"] == flags[-1]
    _assert_leaves_equal(facts["saved"], facts["after"])
    # Updates went on after the first bad step.
    assert facts["saved"] != facts["before"][first_bad + 1]


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_nonfinite_steps_through_the_trainer(policy, tmp_path):
  facts = nonfinite_facts(policy, 1, str(tmp_path / "run"))
  assert facts["devices"] == 1
  _check_nonfinite(facts, policy)


def test_nonfinite_steps_through_the_sharded_trainer(tmp_path):
  out = tmp_path / "facts.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(filter(None, [
      os.environ.get("XLA_FLAGS"),
      "--xla_force_host_platform_device_count=2"])))
  worker = subprocess.run(
      [sys.executable, os.path.abspath(__file__), str(out)], env=env,
      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, timeout=300, check=False)
  assert worker.returncode == 0, worker.stdout[-4000:]
  facts = json.loads(out.read_text())
  for policy in ("stop", "skip"):
    assert facts[policy]["devices"] == 2  # params replicated on both
    _check_nonfinite(facts[policy], policy)


if __name__ == "__main__":
  import tempfile  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp, _no_figures():
    all_facts = {policy: nonfinite_facts(policy, 2, os.path.join(tmp, policy))
                 for policy in ("stop", "skip")}
  with open(sys.argv[1], "w") as f:
    json.dump(all_facts, f)
