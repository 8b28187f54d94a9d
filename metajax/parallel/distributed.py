"""Several hosts: start `jax.distributed` from environment variables.

Call `initialize_from_env()` first thing in every process, before any other
JAX call. After it, `jax.devices()` lists the devices of all processes, so
`metajax.parallel.sharding.make_task_mesh()` spans every host, and each process runs
the same program (SPMD):

  * tasks sampled inside the step come from the replicated key, so every
    process computes the same global meta-batch and keeps its devices' part;
  * host-fed tasks: each process loads its own slice of the meta-batch and
    `metajax.parallel.sharding.shard_tasks` assembles the global array.

Environment variables (explicit settings win over cluster auto-detection):

  METAJAX_COORDINATOR     host:port of process 0 (else JAX_COORDINATOR_ADDRESS)
  METAJAX_NUM_PROCESSES   number of processes
  METAJAX_PROCESS_ID      this process, 0 .. num_processes - 1
  METAJAX_LOCAL_DEVICES   optional comma-separated local device ids
  METAJAX_INIT_TIMEOUT    seconds to wait for the others (default 300)
  METAJAX_DISTRIBUTED     "auto": let JAX detect the cluster (Slurm, Open MPI,
                          Cloud TPU, Kubernetes); "off": single process

With none of them set, nothing happens (one process). On CPU the collectives
go through gloo (`jax_cpu_collectives_implementation`, the default in recent
JAX); GPUs use NCCL.
"""
import os
from typing import Mapping, Optional

import jax


def distributed_settings(environ: Mapping[str, str]) -> Optional[dict]:
  """Keyword arguments for `jax.distributed.initialize`, or None (one process).

  Raises:
    ValueError: for incomplete or malformed settings, naming the variable.
  """
  mode = environ.get("METAJAX_DISTRIBUTED", "").strip().lower()
  if mode == "off":
    return None
  if mode not in ("", "auto"):
    raise ValueError("METAJAX_DISTRIBUTED must be 'auto' or 'off', got "
                     f"{mode!r}")
  coordinator = (environ.get("METAJAX_COORDINATOR")
                 or environ.get("JAX_COORDINATOR_ADDRESS"))
  num_processes = environ.get("METAJAX_NUM_PROCESSES")
  process_id = environ.get("METAJAX_PROCESS_ID")
  settings = {}
  if "METAJAX_INIT_TIMEOUT" in environ:
    settings["initialization_timeout"] = _int(environ, "METAJAX_INIT_TIMEOUT")
  if mode == "auto":
    return settings
  if num_processes is None and process_id is None:
    return None
  missing = [name for name, value in (
      ("METAJAX_COORDINATOR (or JAX_COORDINATOR_ADDRESS)", coordinator),
      ("METAJAX_NUM_PROCESSES", num_processes),
      ("METAJAX_PROCESS_ID", process_id)) if value is None]
  if missing:
    raise ValueError("multi-process run needs " + ", ".join(missing) +
                     " (or METAJAX_DISTRIBUTED=auto on a managed cluster)")
  settings.update(coordinator_address=coordinator,
                  num_processes=_int(environ, "METAJAX_NUM_PROCESSES"),
                  process_id=_int(environ, "METAJAX_PROCESS_ID"))
  if not 0 <= settings["process_id"] < settings["num_processes"]:
    raise ValueError(
        f"METAJAX_PROCESS_ID ({settings['process_id']}) must be in "
        f"[0, METAJAX_NUM_PROCESSES={settings['num_processes']})")
  if environ.get("METAJAX_LOCAL_DEVICES"):
    settings["local_device_ids"] = [
        int(i) for i in environ["METAJAX_LOCAL_DEVICES"].split(",")]
  return settings


def _int(environ, name) -> int:
  try:
    return int(environ[name])
  except ValueError:
    raise ValueError(f"{name} must be an integer, got {environ[name]!r}"
                     ) from None


def initialize_from_env(environ: Optional[Mapping[str, str]] = None) -> bool:
  """Calls `jax.distributed.initialize` as the environment asks.

  Args:
    environ: the variables to read (default `os.environ`).

  Returns:
    Whether the distributed system was initialized.
  """
  settings = distributed_settings(os.environ if environ is None else environ)
  if settings is None:
    return False
  jax.distributed.initialize(**settings)
  return True


def is_main_process() -> bool:
  """True on the process that should write logs and checkpoints."""
  return jax.process_index() == 0
