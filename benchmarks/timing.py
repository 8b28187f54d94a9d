"""Timing helpers: ms per call, compile time, XLA FLOPs, the matmul peak.

Every timing blocks on the result (`jax.block_until_ready`) after a warm-up.
A sample times `calls_per_sample` back-to-back calls and divides, so that
sub-millisecond steps are measured as the trainer runs them (asynchronous
dispatch, one sync at the end) rather than dominated by the sync itself.
"""
import contextlib
import json
import math
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def summarize_ms(seconds_per_call) -> dict:
  """Median, quartiles and extremes (ms) of per-call times in seconds."""
  ms = 1e3 * np.asarray(seconds_per_call, np.float64)
  p25, median, p75 = np.percentile(ms, [25, 50, 75])
  return {"median_ms": float(median), "p25_ms": float(p25),
          "p75_ms": float(p75), "min_ms": float(ms.min()),
          "max_ms": float(ms.max()), "samples": int(ms.size)}


def calibrate(run_calls: Callable[[int], None], target_seconds: float) -> int:
  """Calls per sample so that one sample lasts about `target_seconds`."""
  calls = 1
  while True:
    start = time.perf_counter()
    run_calls(calls)
    elapsed = time.perf_counter() - start
    if elapsed >= target_seconds or calls >= 4096:
      return calls
    calls = min(4096, max(2 * calls,
                          int(calls * target_seconds / max(elapsed, 1e-6))))


def time_stateful(step: Callable, state, *, warmup: int = 3, samples: int = 20,
                  target_seconds: float = 0.02, max_seconds: float = 60.0):
  """Times `state, _ = step(state)` (state donated), after `warmup` calls.

  `state` is whatever one call hands the next: the meta-state, or for a
  prefetching step `(state, tasks)` (`problems.stateful_step`).
  Slow steps take fewer samples (at least 3) to stay near `max_seconds`.

  Returns:
    `(summary, state)`: `summarize_ms` of seconds per call, the final state.
  """
  box = [state]

  def run_calls(count):
    current = box[0]
    for _ in range(count):
      current, _ = step(current)
    box[0] = jax.block_until_ready(current)

  start = time.perf_counter()
  run_calls(1)  # Compiles if needed; a slow step needs fewer warm-up calls.
  if time.perf_counter() - start < 1.0:
    run_calls(max(0, warmup - 1))
  start = time.perf_counter()
  calls = calibrate(run_calls, target_seconds)
  per_sample = time.perf_counter() - start
  samples = max(3, min(samples, int(max_seconds / max(per_sample, 1e-9))))
  times = []
  for _ in range(samples):
    start = time.perf_counter()
    run_calls(calls)
    times.append((time.perf_counter() - start) / calls)
  summary = summarize_ms(times)
  summary["calls_per_sample"] = calls
  return summary, box[0]


def time_compile(lower: Callable[[], jax.stages.Lowered]):
  """`(lower_seconds, compile_seconds, compiled)` for an AOT lowering."""
  start = time.perf_counter()
  lowered = lower()
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  return lowered_at - start, time.perf_counter() - lowered_at, compiled


def _cost(analysis) -> dict:
  # Older jaxlibs return a list with one dict per computation.
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return dict(analysis or {})


@contextlib.contextmanager
def unrolled_scans():
  """Traces every `lax.scan` (and static `fori_loop`) fully unrolled.

  XLA's cost analysis counts a while-loop body once, whatever its trip
  count, so a 5-step inner loop would report the FLOPs of one step. Lowering
  with the loops unrolled (not compiling) gives the real count. This patches
  a private JAX module; if that moves, the context does nothing and
  `flops_per_call` says so.
  """
  try:
    from jax._src.lax.control_flow import loops  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield False
    return
  original, public = loops.scan, jax.lax.scan

  def scan(f, init, xs=None, length=None, reverse=False, unroll=1, **kwargs):
    del unroll
    return original(f, init, xs, length=length, reverse=reverse, unroll=True,
                    **kwargs)

  loops.scan = jax.lax.scan = scan
  try:
    yield True
  finally:
    loops.scan, jax.lax.scan = original, public


def flops_per_call(lower: Callable[[], jax.stages.Lowered]) -> dict:
  """XLA cost-analysis FLOPs of one call, loops unrolled (see above).

  Clears JAX's caches (call it before compiling what you will time).

  Returns:
    `{"flops": float, "flops_method": str}`; the method is
    "xla-unrolled-hlo" or, if unrolling was unavailable, "xla-loop-body-once"
    (an undercount for multi-step loops).
  """
  # jit caches traces: clear them so this lowering re-traces with the
  # loops unrolled, and so that later lowerings do not reuse it.
  jax.clear_caches()
  try:
    with unrolled_scans() as unrolled:
      lowered = lower()
  finally:
    jax.clear_caches()
  flops = _cost(lowered.cost_analysis()).get("flops")
  method = "xla-unrolled-hlo" if unrolled else "xla-loop-body-once"
  if flops is None:  # GPU backends analyse compiled modules only.
    flops = _cost(lowered.compile().cost_analysis()).get("flops", math.nan)
    method += "-compiled"
    jax.clear_caches()
  return {"flops": float(flops), "flops_method": method}


def compiled_flops(compiled) -> float:
  """The compiled module's own FLOP count (loop bodies counted once)."""
  return float(_cost(compiled.cost_analysis()).get("flops", float("nan")))


def matmul_peak(size: int = 0, samples: int = 15, dtype=jnp.float32) -> dict:
  """Median GFLOP/s of a jitted `size`^3 matmul on the default device.

  `size` 0 picks 1024 on CPU and 4096 on accelerators (big enough to
  approach the compute peak).
  """
  if not size:
    size = 1024 if jax.default_backend() == "cpu" else 4096
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  b = jax.random.normal(jax.random.key(1), (size, size), dtype)
  matmul = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(matmul(a, b))

  def run_calls(count):
    out = None
    for _ in range(count):
      out = matmul(a, b)
    jax.block_until_ready(out)

  calls = calibrate(run_calls, 0.05)
  times = []
  for _ in range(samples):
    start = time.perf_counter()
    run_calls(calls)
    times.append((time.perf_counter() - start) / calls)
  gflops = 2 * size**3 / np.asarray(times) / 1e9
  return {"size": size, "dtype": jnp.dtype(dtype).name,
          "median_gflops": float(np.median(gflops)),
          "max_gflops": float(gflops.max())}


def device_info() -> dict:
  """What ran the benchmark: device, versions, load, XLA flags."""
  device = jax.devices()[0]
  info = {"device_kind": str(device.device_kind),
          "platform": device.platform, "num_devices": jax.device_count(),
          "jax": jax.__version__, "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "machine": platform.machine(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
  try:
    info["load_average"] = [round(v, 2) for v in os.getloadavg()]
  except OSError:
    pass
  return info


def device_slug() -> str:
  """A folder name for the default device, e.g. "cpu" or "nvidia-h100-..."."""
  kind = str(jax.devices()[0].device_kind).lower()
  slug = "".join(c if c.isalnum() else "-" for c in kind)
  return "-".join(part for part in slug.split("-") if part) or "unknown"


def write_rows(rows: list, name: str, out_dir: str = "",
               load_before=None) -> dict:
  """Writes `{"device": device_info(), "rows": rows}` to `<out_dir>/<name>`
  (default `benchmarks/results/<device_slug()>/`), the load average seen
  before the timings beside the device's; returns the device info."""
  info = device_info()
  info["load_average_before"] = load_before
  out_dir = out_dir or os.path.join(os.path.dirname(__file__), "results",
                                    device_slug())
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, name), "w") as f:
    json.dump({"device": info, "rows": rows}, f, indent=1)
  return info
