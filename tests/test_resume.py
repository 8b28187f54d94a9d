"""Runs survive SIGKILL: resume gives bit-identical params and a clean log."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from conftest import REPO_ROOT
from metajax.training import run_io
from metajax.training import trainer as train
from metajax.training.checkpoint import Checkpointer, CorruptCheckpointError
from metajax.training.config import Config, override

NUM_STEPS = 3000  # long enough that a kill after step ~1000 lands mid-training
RUN_ARGS = ["sine", "--model.hidden_sizes=8", "--outer.meta_batch_size=4",
            "--task.support_points=5", "--task.query_points=5",
            f"--outer.num_meta_steps={NUM_STEPS}", "--outer.steps_per_call=10",
            "--run.log_every=50", "--run.checkpoint_every=100",
            "--run.keep_checkpoints=100",  # every checkpoint stays to be seen
            "--eval.num_tasks=10", "--task.eval_query_points=5",
            "--no_progress"]


def _cli(*args, **popen_kwargs):
  return subprocess.Popen([sys.executable, "-m", "metajax", *args],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **popen_kwargs)


def _steps_checkpointed(run_dir):
  path = os.path.join(run_dir, "checkpoints")
  return [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []


def _newest_checkpoint(run_dir) -> int:
  return max(map(int, _steps_checkpointed(run_dir)), default=0)


def _records(run_dir):
  return run_io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))


def _kill_after_checkpoint(process, run_dir, step, delay):
  """SIGKILLs `process` `delay` seconds after the checkpoint at `step` (or a
  later one) exists; fails if the process ends on its own first."""
  deadline = time.time() + 240
  while (_newest_checkpoint(run_dir) < step and process.poll() is None
         and time.time() < deadline):
    time.sleep(0.01)
  reached = _newest_checkpoint(run_dir) >= step
  if reached:
    time.sleep(delay)
  process.send_signal(signal.SIGKILL)
  out = process.communicate()[0].decode()
  assert reached, f"no checkpoint at step {step} in time:\n{out}"
  assert process.returncode == -signal.SIGKILL, out


def test_sigkill_then_resume_is_bit_identical(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  uninterrupted = _cli(*RUN_ARGS, f"--run_dir={reference}")
  try:
    rng = random.Random(0)
    # Killed twice mid-training, each time a random moment (up to 0.05 s)
    # after a checkpoint, the second run resuming the first.
    _kill_after_checkpoint(_cli(*RUN_ARGS, f"--run_dir={killed}"), killed,
                           step=500, delay=rng.uniform(0.0, 0.05))
    first_stop = _newest_checkpoint(killed)
    assert 500 <= first_stop < NUM_STEPS
    _kill_after_checkpoint(
        _cli(*RUN_ARGS, f"--run_dir={killed}", "--resume"), killed,
        step=first_stop + 500, delay=rng.uniform(0.0, 0.05))
    resumed_from = _newest_checkpoint(killed)
    assert first_stop + 500 <= resumed_from < NUM_STEPS
    # Training never finished: no final files yet.
    assert not os.path.exists(os.path.join(killed, "results.json"))
    assert not os.path.exists(os.path.join(killed, "params.msgpack"))
    logged_before = _records(killed)

    # The progress bar (on stderr) shows where the last run starts.
    resumed = _cli("--resume", f"--run_dir={killed}")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    counts = re.findall(rf"(\d+)/{NUM_STEPS} ", out.decode())
    assert int(counts[0]) == resumed_from and int(counts[-1]) == NUM_STEPS
    out, _ = uninterrupted.communicate(timeout=300)
  finally:
    if uninterrupted.poll() is None:  # a failure above
      uninterrupted.kill()
      uninterrupted.wait()
  assert uninterrupted.returncode == 0, out.decode()

  results = json.load(open(os.path.join(killed, "results.json")))
  assert results["meta_steps_done"] == NUM_STEPS
  assert _newest_checkpoint(killed) == NUM_STEPS
  with open(os.path.join(reference, "params.msgpack"), "rb") as a, \
       open(os.path.join(killed, "params.msgpack"), "rb") as b:
    assert a.read() == b.read()
  logged = _records(killed)
  # The lines up to the checkpoint resumed from are the earlier runs' own.
  assert logged[:resumed_from // 50] == [
      r for r in logged_before if r["step"] <= resumed_from]
  expected = _records(reference)
  assert [r["step"] for r in expected] == list(range(50, NUM_STEPS + 1, 50))
  assert [r["step"] for r in logged] == [r["step"] for r in expected]
  # Every logged value agrees, bit for bit (wall times aside).
  drop_time = lambda r: {k: v for k, v in r.items() if k != "elapsed_seconds"}
  assert list(map(drop_time, logged)) == list(map(drop_time, expected))


def test_fresh_run_refuses_an_existing_run_directory(tmp_path):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "config.json").write_text("{}")
  proc = _cli(*RUN_ARGS, f"--run_dir={run_dir}")
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 2 and b"--resume" in out


def _state():
  params = {"w": jnp.arange(3.0), "b": jnp.ones((2, 2))}
  optimizer = optax.adam(1e-3)
  return mj.init_meta_state(params, optimizer, jax.random.key(7))


def test_checkpoint_roundtrip_is_exact(tmp_path):
  state = _state()._replace(step=jnp.array(5, jnp.int32))
  checkpointer = Checkpointer(str(tmp_path))
  checkpointer.save(state)
  restored = checkpointer.restore(_state())
  assert int(restored.step) == 5
  np.testing.assert_array_equal(jax.random.key_data(restored.key),
                                jax.random.key_data(state.key))
  for a, b in zip(jax.tree.leaves((state.params, state.opt_state)),
                  jax.tree.leaves((restored.params, restored.opt_state))):
    np.testing.assert_array_equal(a, b)


def test_save_refuses_a_step_that_is_not_newer(tmp_path):
  # Orbax skips such a save silently; a resume past a corrupted checkpoint
  # once lost its checkpoints that way.
  checkpointer = Checkpointer(str(tmp_path))
  checkpointer.save(_state()._replace(step=jnp.array(2, jnp.int32)))
  for step in (1, 2):
    with pytest.raises(ValueError, match=f"step {step} not written"):
      checkpointer.save(_state()._replace(step=jnp.array(step, jnp.int32)))
  assert checkpointer.steps() == [2]


def _corrupt_newest(directory):
  newest = max((d for d in os.listdir(directory) if d.isdigit()), key=int)
  for root, _, files in os.walk(os.path.join(directory, newest, "state")):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 64:
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))
  return int(newest)


def test_corrupted_checkpoint_is_reported_and_not_loaded(tmp_path):
  checkpointer = Checkpointer(str(tmp_path))
  for step in (1, 2):
    state = _state()
    state = state._replace(step=jnp.array(step, jnp.int32),
                           params=jax.tree.map(lambda p: p + step, state.params))
    checkpointer.save(state)
  assert _corrupt_newest(str(tmp_path)) == 2
  with pytest.warns(UserWarning, match="step 2 .* corrupted"):
    restored = Checkpointer(str(tmp_path)).restore(_state())
  assert int(restored.step) == 1  # the previous, valid one
  with pytest.raises(CorruptCheckpointError, match=str(tmp_path)):
    with pytest.warns(UserWarning):
      Checkpointer(str(tmp_path)).restore(_state(), step=2)


def test_time_limit_stops_training_and_still_saves_and_evaluates(tmp_path):
  config = override(Config(), {
      "model.hidden_sizes": (8,), "outer.meta_batch_size": 4,
      "task.support_points": 5, "task.query_points": 5,
      "outer.num_meta_steps": 10**7, "outer.steps_per_call": 10,
      "run.log_every": 100, "outer.max_train_seconds": 1.0,
      "eval.num_tasks": 10, "task.eval_query_points": 5,
      "task.eval_shots": (5,), "eval.inner_steps": (1,)})
  run_dir = tmp_path / "run"
  results = train.train(config, str(run_dir), progress=False)
  assert results["stopped_by_time_limit"]
  steps = results["meta_steps_done"]
  assert 10 <= steps < config.outer.num_meta_steps and steps % 10 == 0
  assert results["final_metrics"]["step"] == steps
  assert _steps_checkpointed(str(run_dir)) == [str(steps)]
  assert (run_dir / "params.msgpack").exists()
  assert np.isfinite(results["evaluation"]["K=5"]["step_1"]["mean"])
