"""Runs survive SIGKILL: resume gives bit-identical params and a clean log."""
import json
import os
import random
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
from metajax.training import trainer as train
from metajax.training.checkpoint import Checkpointer, CorruptCheckpointError
from metajax.training.config import Config, override

RUN_ARGS = ["sine", "--model.hidden_sizes=8", "--outer.meta_batch_size=4",
            "--task.support_points=5", "--task.query_points=5",
            "--outer.num_meta_steps=1500", "--outer.steps_per_call=10",
            "--run.log_every=50", "--run.checkpoint_every=100",
            "--eval.num_tasks=10", "--task.eval_query_points=5",
            "--no_progress"]


def _cli(*args, **popen_kwargs):
  return subprocess.Popen([sys.executable, "-m", "metajax", *args],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **popen_kwargs)


def _steps_checkpointed(run_dir):
  path = os.path.join(run_dir, "checkpoints")
  return [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []


def test_sigkill_then_resume_is_bit_identical(tmp_path):
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  uninterrupted = _cli(*RUN_ARGS, f"--run_dir={reference}")
  rng = random.Random(0)
  for attempt in range(2):  # kill twice, at random moments after a checkpoint
    args = RUN_ARGS + [f"--run_dir={killed}"] + (["--resume"] if attempt else [])
    victim = _cli(*args)
    deadline = time.time() + 120
    seen = len(_steps_checkpointed(killed))
    while len(_steps_checkpointed(killed)) <= seen and victim.poll() is None:
      assert time.time() < deadline, "no checkpoint was written in time"
      time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.0))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
  resumed = _cli("--resume", f"--run_dir={killed}", "--no_progress")
  out, _ = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, out.decode()
  out, _ = uninterrupted.communicate(timeout=300)
  assert uninterrupted.returncode == 0, out.decode()

  with open(os.path.join(reference, "params.msgpack"), "rb") as a, \
       open(os.path.join(killed, "params.msgpack"), "rb") as b:
    assert a.read() == b.read()
  for run_dir in (reference, killed):
    steps = [json.loads(line)["step"]
             for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert steps == list(range(50, 1501, 50)), run_dir
  # Logged values agree too (not just the step numbers).
  ref = [json.loads(l)["meta_loss"] for l in open(os.path.join(reference, "metrics.jsonl"))]
  got = [json.loads(l)["meta_loss"] for l in open(os.path.join(killed, "metrics.jsonl"))]
  assert ref == got


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
