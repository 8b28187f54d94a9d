"""Sharded meta-step: equal to one device, tasks really split, several hosts.

The device count is fixed when JAX starts, so the multi-device checks run
tests/multihost_worker.py in fresh processes with fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N) and read its JSON.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from metajax.parallel import distributed
from metajax.parallel import sharding
from metajax.training.config import Config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = str(REPO_ROOT / "tests" / "multihost_worker.py")
TIMEOUT_S = 150


def _env(num_devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("METAJAX_", "JAX_COORDINATOR"))}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"--xla_force_host_platform_device_count={num_devices}"), **extra)
  # The worker script's own folder leads its sys.path, so the checkout is
  # added for runs where metajax is not pip-installed.
  env["PYTHONPATH"] = os.pathsep.join(
      filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
  return env


def _start(mode, out_path, env):
  return subprocess.Popen([sys.executable, WORKER, mode, str(out_path)],
                          env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(processes, out_paths) -> list:
  """Waits for all (killing all on timeout); the JSON each one wrote."""
  logs = []
  try:
    for process in processes:
      logs.append(process.communicate(timeout=TIMEOUT_S)[0])
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
    pytest.fail(f"sharding worker timed out after {TIMEOUT_S} s")
  for process, log in zip(processes, logs):
    assert process.returncode == 0, f"worker failed:\n{log[-4000:]}"
  return [json.loads(open(path).read()) for path in out_paths]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
  """Starts, side by side, the 4-device worker and a 2-process group."""
  out_dir = tmp_path_factory.mktemp("sharding")
  devices_out = out_dir / "devices.json"
  host_outs = [out_dir / f"process{i}.json" for i in range(2)]
  coordinator = f"127.0.0.1:{_free_port()}"
  started = {
      "devices": ([_start("devices", devices_out, _env(4))], [devices_out]),
      "hosts": ([_start("multihost", host_outs[i], _env(
          2, METAJAX_COORDINATOR=coordinator, METAJAX_NUM_PROCESSES="2",
          METAJAX_PROCESS_ID=str(i), METAJAX_INIT_TIMEOUT="60"))
                 for i in range(2)], host_outs)}
  yield started
  for processes, _ in started.values():
    for process in processes:
      if process.poll() is None:
        process.kill()


@pytest.fixture(scope="module")
def four_devices(workers):
  """Results of one process with 4 fake CPU devices, meta-batch 8."""
  return _finish(*workers["devices"])[0]


@pytest.fixture(scope="module")
def two_processes(workers):
  """Results of two processes with 2 fake CPU devices each (gloo)."""
  return _finish(*workers["hosts"])


def _assert_close(actual, expected):
  """Equal params, meta-losses and meta-gradient norms after each step.

  The gradient norms fix the meta-gradient's scale: a sharded step that
  summed the devices' gradients instead of averaging them gives norms
  `num_devices` times the reference's (and, under the SGD outer optimizer
  of `multihost_worker.tiny_problem`, other params).
  """
  params_a, losses_a, grad_norms_a = actual
  params_e, losses_e, grad_norms_e = expected
  assert len(params_a) == len(params_e)
  for a, e in zip(params_a, params_e):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(losses_a, losses_e, rtol=1e-5)
  assert len(grad_norms_e) == 3 and min(grad_norms_e) > 0.1
  np.testing.assert_allclose(grad_norms_a, grad_norms_e, rtol=1e-5)


def test_sampled_in_step_equals_single_device(four_devices):
  assert four_devices["device_count"] == 4
  _assert_close(four_devices["sharded_sampled"], four_devices["ref_sampled"])


def test_passed_in_tasks_equal_single_device(four_devices):
  _assert_close(four_devices["sharded_fed"], four_devices["ref_fed"])


def test_fused_sharded_steps_equal_single_steps(four_devices):
  _assert_close(four_devices["sharded_fused"], four_devices["ref_sampled"])


def test_tasks_are_split_and_state_replicated(four_devices):
  # Sharding of the sampled tasks where the meta-gradient sees them.
  assert four_devices["sampled_task_sharding"] == ["P('tasks',)"]
  assert four_devices["sampled_task_devices"] == [4]
  assert four_devices["fed_tasks_sharding"] == "P('tasks',)"
  # Each device holds 8 / 4 tasks, and the task mean is an all-reduce.
  assert four_devices["hlo_per_device_tasks"]
  assert four_devices["hlo_all_reduce"]
  assert four_devices["params_sharding"] == "P()"
  assert four_devices["num_traces"] == 1  # 3 calls and a .lower().


def test_meta_batch_not_divisible_raises_before_compiling(four_devices):
  for name in ("odd_sampled_error", "odd_fed_error", "trainer_odd_error"):
    message = four_devices[name]
    assert "meta_batch_size (6)" in message and "device count (4)" in message
  assert "run.num_devices" in four_devices["trainer_odd_error"]
  assert "run.num_devices" in four_devices["trainer_too_many_error"]


def test_trainer_num_devices_matches_single_device(four_devices):
  _assert_close(four_devices["trainer_4"], four_devices["trainer_1"])


def test_two_processes_agree_with_one(four_devices, two_processes):
  for i, result in enumerate(two_processes):
    assert (result["process_index"], result["process_count"]) == (i, 2)
    assert (result["device_count"], result["local_device_count"]) == (4, 2)
    _assert_close(result["sharded_sampled"], four_devices["ref_sampled"])
    _assert_close(result["sharded_fed"], four_devices["ref_fed"])


def test_task_mesh_in_this_process():
  mesh = sharding.make_task_mesh()
  assert mesh.axis_names == ("tasks",)
  assert mesh.size == jax.device_count()
  assert sharding.make_task_mesh(1).size == 1
  for bad in (-1, jax.device_count() + 1, 1.5):
    with pytest.raises(ValueError, match="num_devices"):
      sharding.make_task_mesh(bad)
  abstract = jax.sharding.AbstractMesh((4,), ("tasks",))
  sharding.check_divisible(8, abstract)
  with pytest.raises(ValueError, match=r"meta_batch_size \(6\).*\(4\)"):
    sharding.check_divisible(6, abstract)


def test_config_default_is_one_device():
  assert Config().run.num_devices == 1


def test_distributed_settings_from_env():
  assert distributed.distributed_settings({}) is None
  off = {"METAJAX_DISTRIBUTED": "off", "METAJAX_NUM_PROCESSES": "2"}
  assert distributed.distributed_settings(off) is None
  assert distributed.distributed_settings({"METAJAX_DISTRIBUTED": "auto"}) == {}
  full = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234",
          "METAJAX_NUM_PROCESSES": "2", "METAJAX_PROCESS_ID": "1",
          "METAJAX_LOCAL_DEVICES": "0,1", "METAJAX_INIT_TIMEOUT": "30"}
  assert distributed.distributed_settings(full) == dict(
      coordinator_address="127.0.0.1:1234", num_processes=2, process_id=1,
      local_device_ids=[0, 1], initialization_timeout=30)
  with pytest.raises(ValueError, match="METAJAX_COORDINATOR"):
    distributed.distributed_settings({"METAJAX_NUM_PROCESSES": "2",
                                      "METAJAX_PROCESS_ID": "0"})
  with pytest.raises(ValueError, match="METAJAX_PROCESS_ID"):
    distributed.distributed_settings({**full, "METAJAX_PROCESS_ID": "2"})
  with pytest.raises(ValueError, match="METAJAX_NUM_PROCESSES"):
    distributed.distributed_settings({**full, "METAJAX_NUM_PROCESSES": "two"})


def test_initialize_from_env_calls_jax(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kwargs: calls.append(kwargs))
  assert not distributed.initialize_from_env({})
  assert distributed.initialize_from_env({
      "METAJAX_COORDINATOR": "127.0.0.1:1", "METAJAX_NUM_PROCESSES": "1",
      "METAJAX_PROCESS_ID": "0"})
  assert calls == [dict(coordinator_address="127.0.0.1:1", num_processes=1,
                        process_id=0)]
