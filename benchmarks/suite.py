"""Meta-step throughput suite: ms per meta-step, FLOPs, memory, vs PyTorch.

  python -m benchmarks.suite --torch --memory sine,omniglot5  # all (CPU: ~1 h)
  python -m benchmarks.suite --problems sine --torch     # sine only, ~5 min
  python -m benchmarks.suite --quick                     # tiny sizes, ~1 min

Writes `results.json`, `results.md` and `memory.png` (with a memory sweep)
into `--out` (default `benchmarks/results/<device>/`). Per row: median and
quartiles of ms per meta-step (fused rows: per meta-step, not per call),
tasks/s, lower and compile seconds, XLA FLOPs per meta-step (loops unrolled,
see `timing.flops_per_call`), achieved GFLOP/s and its fraction of a matmul
peak measured in the same run. Timings on a shared machine are noisy: the JSON
keeps the load average seen before and after.
"""
import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time

from benchmarks import memory, problems, report, timing

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def benchmark_run(name: str, run, data: str, peak_gflops: float,
                  quick: bool, flops=None) -> dict:
  """One row: timing, compile time and FLOPs of `run.step_fn`.

  `flops` (per call) may be passed in, e.g. a fused row's from its unfused
  twin, to skip lowering a fully unrolled fused step.
  """
  config = run.config
  step, state = run.step_fn, run.state
  flops = flops or timing.flops_per_call(lambda: step.lower(state))
  lower_s, compile_s, compiled = timing.time_compile(lambda: step.lower(state))
  summary, _ = timing.time_stateful(
      step, state, warmup=2 if quick else 5, samples=5 if quick else 30,
      target_seconds=0.002 if quick else 0.05,
      max_seconds=1.0 if quick else 20.0)
  per_step = {k: (v / config.steps_per_call if k.endswith("_ms") else v)
              for k, v in summary.items()}
  flops_per_step = flops["flops"] / config.steps_per_call
  seconds = per_step["median_ms"] / 1e3
  gflops = flops_per_step / seconds / 1e9
  return {
      "name": name, "framework": "metajax", "task": config.task,
      "data": data, "algorithm": config.algorithm,
      "inner_steps": config.inner_steps, "first_order": config.first_order,
      "meta_batch_size": config.meta_batch_size,
      "steps_per_call": config.steps_per_call, "ms_per_step": per_step,
      "tasks_per_second": config.meta_batch_size / seconds,
      "lower_seconds": lower_s, "compile_seconds": compile_s,
      "flops_per_step": flops_per_step, "flops_method": flops["flops_method"],
      "xla_compiled_flops_per_call": timing.compiled_flops(compiled),
      "gflops_per_second": gflops,
      "fraction_of_matmul_peak": gflops / peak_gflops,
  }


def benchmark_family(family: str, quick: bool, peak_gflops: float,
                     log=print) -> tuple:
  """`(rows, skipped)` for the cases of `family`."""
  if family != "sine":
    missing = problems.conv4_missing()
    if missing:
      return [], [f"{family}: skipped, {missing}"]
  rows, flops_by_config = [], {}
  for case in problems.cases(family, quick):
    run, data = problems.build(case.config, quick)
    spc = case.config.steps_per_call
    unfused = flops_by_config.get(
        dataclasses.replace(case.config, steps_per_call=1))
    flops = unfused and dict(unfused, flops=unfused["flops"] * spc)
    row = benchmark_run(case.name, run, data, peak_gflops, quick, flops)
    if spc == 1:
      flops_by_config[case.config] = {
          "flops": row["flops_per_step"], "flops_method": row["flops_method"]}
    log(report.row_line(row))
    rows.append(row)
  return rows, []


def run_torch(families, quick: bool, log=print) -> dict:
  """The PyTorch rows, from `benchmarks.torch_maml` in a fresh process.

  Rows arrive one JSON line at a time, so a run stopped early keeps them.
  """
  command = [sys.executable, "-m", "benchmarks.torch_maml", "--problems",
             ",".join(families)] + (["--quick"] if quick else [])
  rows, last, reason = [], "", "no output"
  with subprocess.Popen(command, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True,
                        cwd=os.path.dirname(PACKAGE_DIR)) as process:
    for line in process.stdout:
      line = line.rstrip("\n")
      if line.startswith("ROW "):
        rows.append(json.loads(line[len("ROW "):]))
      elif line.startswith("{"):
        last = line
      elif line.strip():
        reason = line
        if "Warning" not in line:
          log(line)
  if process.returncode or not last:
    return {"rows": rows, "skipped": [f"torch: stopped early, {reason}"]}
  return {"rows": rows, "skipped": json.loads(last)["skipped"]}


def run_suite(families=("sine",), quick: bool = False, with_torch: bool = False,
              memory_families=("sine",), log=print, memory_steps=None,
              memory_variants=None, checkpoint=None) -> dict:
  """Runs the benchmarks and returns the results dict (see module doc).

  `checkpoint(results)`, if given, is called after every part, so that a run
  cut short still leaves what it measured.
  """
  started = time.time()
  info = timing.device_info()
  log(f"device {info['device_kind']}, load {info.get('load_average')}")
  peak = timing.matmul_peak(size=256 if quick else 0,
                            samples=3 if quick else 15)
  log(f"matmul peak {peak['median_gflops']:.1f} GFLOP/s "
      f"({peak['size']}^3 {peak['dtype']})")
  results = {"created": datetime.datetime.now().isoformat(timespec="seconds"),
             "quick": quick, "device": info, "matmul_peak": peak, "rows": [],
             "memory": {}, "skipped": [], "complete": False}

  def save():
    info["load_average_after"] = timing.device_info().get("load_average")
    results["wall_seconds"] = time.time() - started
    if checkpoint:
      checkpoint(results)

  for family in families:
    family_rows, family_skipped = benchmark_family(
        family, quick, peak["median_gflops"], log)
    results["rows"] += family_rows
    results["skipped"] += family_skipped
    save()
  if with_torch:
    torch_results = run_torch(families, quick, log)
    results["rows"] += torch_results["rows"]
    results["skipped"] += torch_results["skipped"]
    save()
  steps = memory_steps or (memory.QUICK_STEPS if quick else memory.STEPS)
  for family in memory_families:
    missing = problems.conv4_missing() if family != "sine" else None
    if missing:
      results["skipped"].append(f"memory {family}: skipped, {missing}")
      continue
    results["memory"].update(
        memory.sweep_all([family], steps, quick, memory_variants))
    save()
  for line in results["skipped"]:
    log(line)
  results["complete"] = True
  save()
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes and few repeats (for tests)")
  parser.add_argument(
      "--out", default="",
      help="output folder (default benchmarks/results/<device>)")
  parser.add_argument("--torch", action="store_true",
                      help="also time PyTorch MAML (needs torch)")
  parser.add_argument("--problems", default=",".join(problems.FAMILIES),
                      help=f"comma-separated subset of {problems.FAMILIES}")
  parser.add_argument("--memory", default="sine",
                      help="families for the memory sweep ('' for none)")
  parser.add_argument("--no-memory", action="store_true")
  parser.add_argument("--memory-steps", default="",
                      help="inner-step counts of the memory sweep, e.g. 1,5,25")
  args = parser.parse_args(argv)
  families = [f for f in args.problems.split(",") if f]
  memory_families = [] if args.no_memory else [
      f for f in args.memory.split(",") if f]
  for family in families + memory_families:
    if family not in problems.FAMILIES:
      parser.error(f"unknown problem {family!r}; expected {problems.FAMILIES}")
  memory_steps = [int(s) for s in args.memory_steps.split(",") if s]
  out = args.out or os.path.join(PACKAGE_DIR, "results", timing.device_slug())
  results = run_suite(families, args.quick, args.torch, memory_families,
                      memory_steps=memory_steps or None,
                      checkpoint=lambda r: report.write_all(r, out))
  written = [os.path.basename(p) for p in report.write_all(results, out)]
  print(f"wrote {', '.join(written)} into {out}")
  return results


if __name__ == "__main__":
  main()
