"""Meta-step throughput suite: ms per meta-step, FLOPs, memory, vs PyTorch.

  python -m benchmarks.suite --torch --memory sine,omniglot5  # all (CPU: ~1 h)
  python -m benchmarks.suite --problems sine --torch     # sine only, ~5 min
  python -m benchmarks.suite --quick                     # tiny sizes, ~1 min
  python -m benchmarks.suite --flops-only --out DIR      # FLOP counts alone
  python -m benchmarks.suite --flops-from DIR/flops.json # reuse those counts
  python -m benchmarks.suite --problems omniglot20 --rows "5-step 1st"  # some rows

Writes `results.json`, `results.md` and `memory.png` (with a memory sweep)
into `--out` (default `benchmarks/results/<device>/`). Per row: median and
quartiles of ms per meta-step (fused rows: per meta-step, not per call),
tasks/s, lower and compile seconds, XLA FLOPs per meta-step (loops unrolled,
see `timing.flops_per_call`), achieved GFLOP/s and its fraction of a matmul
peak measured in the same run. Timings on a shared machine are noisy: the JSON
keeps the load average seen before and after.

GPU backends give FLOPs for compiled modules only, and compiling a fully
unrolled Omniglot step takes minutes there: count the FLOPs once on CPU
(`--flops-only`, lowering only, seconds) and hand them to the GPU run with
`--flops-from`; rows then say where their count came from.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import jax

from benchmarks import memory, problems, report, timing
from metajax import backend as xla_options
from metajax.training import host_memory

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def benchmark_run(name: str, run, data: str, peak_gflops: float,
                  quick: bool, flops=None) -> dict:
  """One row: timing, compile time and FLOPs of `run.step_fn`.

  `flops` (per call) may be passed in, e.g. a fused row's from its unfused
  twin, to skip lowering a fully unrolled fused step. A prefetching step
  (`run.prefetch`) is timed as the trainer runs it, each call's tasks drawn
  by the call before (`problems.stateful_step`).
  """
  config = run.config
  steps_per_call = config.outer.steps_per_call
  lower = lambda: run.step_fn.lower(run.state)
  flops = flops or timing.flops_per_call(lower)
  lower_s, compile_s, compiled = timing.time_compile(lower)
  step, carry = problems.stateful_step(run)
  summary, _ = timing.time_stateful(
      step, carry, warmup=2 if quick else 5, samples=5 if quick else 30,
      target_seconds=0.002 if quick else 0.05,
      max_seconds=1.0 if quick else 20.0)
  per_step = {k: (v / steps_per_call if k.endswith("_ms") else v)
              for k, v in summary.items()}
  flops_per_step = flops["flops"] / steps_per_call
  seconds = per_step["median_ms"] / 1e3
  gflops = flops_per_step / seconds / 1e9
  return {
      "name": name, "framework": "metajax", "task": config.task.NAME,
      "data": data, "algorithm": config.algorithm.NAME,
      "inner_steps": config.inner.steps,
      "first_order": config.inner.first_order,
      "meta_batch_size": config.outer.meta_batch_size,
      "steps_per_call": steps_per_call, "ms_per_step": per_step,
      "tasks_per_second": config.outer.meta_batch_size / seconds,
      "lower_seconds": lower_s, "compile_seconds": compile_s,
      "flops_per_step": flops_per_step, "flops_method": flops["flops_method"],
      "xla_compiled_flops_per_call": timing.compiled_flops(compiled),
      "gflops_per_second": gflops,
      "fraction_of_matmul_peak": gflops / peak_gflops,
  }


def products(run) -> dict:
  """`{"conv", "dense"}`: the Conv4 convolution (Omniglot rows) and the MLP
  product (sine rows) `run` was built with; None where there is none."""
  config = run.config
  return {"conv": (run.formulations.conv
                   if config.model.NAME == "conv4" else None),
          "dense": (run.formulations.dense
                    if config.model.NAME == "mlp" else None)}


def _unfused(case) -> tuple:
  """The key of `case`'s unfused twin: `(config, tasks_given)`."""
  return (problems.changed(case.config, outer__steps_per_call=1),
          case.tasks_given)


def benchmark_family(family: str, quick: bool, peak_gflops: float,
                     log=print, conv: str = "auto",
                     known_flops=None, on_row=None, only: str = "",
                     dense: str = "auto") -> tuple:
  """`(rows, skipped)` for the cases of `family`; `on_row(row)` after each.

  `only` keeps some cases (`problems.select`). `conv`/`dense`: the
  `formulations.conv`/`formulations.dense` of the rows ('auto': the
  preset's choice).

  `known_flops` maps a row name to `{"flops", "flops_method"}` per meta-step
  (see `read_flops`); other rows count their own.
  """
  if family != "sine":
    missing = problems.conv4_missing()
    if missing:
      return [], [f"{family}: skipped, {missing}"]
  rows, flops_by_config = [], {}
  for case in problems.select(problems.cases(family, quick, conv, dense),
                              only):
    run, data = problems.build(case.config, quick, case.tasks_given)
    spc = case.config.outer.steps_per_call
    per_step = (known_flops or {}).get(case.name) or flops_by_config.get(
        _unfused(case))
    flops = per_step and dict(per_step, flops=per_step["flops"] * spc)
    used = products(run)
    row = benchmark_run(case.name, run, data, peak_gflops, quick, flops)
    row.update(used)
    row["tasks_given"] = case.tasks_given
    if spc == 1:
      flops_by_config[case.config, case.tasks_given] = {
          "flops": row["flops_per_step"], "flops_method": row["flops_method"]}
    log(report.row_line(row))
    rows.append(row)
    if on_row:
      on_row(row)
  return rows, []


def count_flops(families, quick: bool = False, conv: str = "auto",
                log=print, dense: str = "auto",
                backend_name: str = "") -> dict:
  """`{"device", "rows": [{"name", "flops_per_step", "flops_method",
  "conv", "dense"}]}`.

  Lowers each row's unfused step with its loops unrolled (no compiling, no
  timing); fused rows get their unfused twin's count per meta-step.
  `backend_name` (e.g. "gpu"; '' for this one): count the program that
  backend runs, built with its formulations (`problems.build`), lowered
  here; the rows' `conv`/`dense` say which.
  """
  rows, by_config = [], {}
  for family in families:
    for case in problems.cases(family, quick, conv, dense):
      key = _unfused(case)
      if key not in by_config:
        run, _ = problems.build(key[0], quick, case.tasks_given,
                                backend_name=backend_name or None)
        by_config[key] = (timing.flops_per_call(
            lambda: run.step_fn.lower(run.state)), products(run))  # pylint: disable=cell-var-from-loop
      flops, used = by_config[key]
      rows.append({"name": case.name, "framework": "metajax",
                   "flops_per_step": flops["flops"],
                   "flops_method": flops["flops_method"], **used})
      log(f"{case.name}: {flops['flops'] / 1e6:.2f} MFLOP per meta-step")
  return {"device": timing.device_info(), "conv": conv, "dense": dense,
          "rows": rows}


def read_flops(path: str) -> dict:
  """Row name -> per-step FLOPs of the metajax rows of a results JSON."""
  with open(path) as f:
    rows = json.load(f)["rows"]
  return {r["name"]: {"flops": r["flops_per_step"],
                      "flops_method": f"{r['flops_method']} (from {path})"}
          for r in rows
          if r.get("framework") == "metajax" and r.get("flops_per_step")}


def run_torch(families, quick: bool, log=print, only: str = "",
              max_seconds: float = 30.0) -> dict:
  """The PyTorch rows, from `benchmarks.torch_maml` in a fresh process.

  `max_seconds` bounds each row's timed samples (at least 3 are taken).

  Rows arrive one JSON line at a time, so a run stopped early keeps them.
  """
  command = [sys.executable, "-m", "benchmarks.torch_maml", "--problems",
             ",".join(families), "--rows", only,
             "--max-seconds", str(max_seconds)] + (["--quick"] if quick else [])
  rows, last, reason = [], "", "no output"
  # PyTorch inherits the suite's environment, huge-page tunable included
  # (metajax/host_memory.py): its torch.func rows ran 3x faster with it.
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
              memory_variants=None, checkpoint=None, conv: str = "auto",
              known_flops=None, only: str = "", dense: str = "auto",
              torch_seconds: float = 30.0) -> dict:
  """Runs the benchmarks and returns the results dict (see module doc).

  `only` keeps the rows (metajax and PyTorch) whose name contains one of
  its comma-separated parts; `torch_seconds` bounds each PyTorch row's
  timed samples.

  `checkpoint(results)`, if given, is called after every row and part, so
  that a run cut short still leaves what it measured. The PyTorch rows of a
  family follow its metajax rows.
  """
  started = time.time()
  info = timing.device_info()
  log(f"device {info['device_kind']}, load {info.get('load_average')}")
  peak = timing.matmul_peak(size=256 if quick else 0,
                            samples=3 if quick else 15)
  log(f"matmul peak {peak['median_gflops']:.1f} GFLOP/s "
      f"({peak['size']}^3 {peak['dtype']})")
  results = {"created": datetime.datetime.now().isoformat(timespec="seconds"),
             "quick": quick, "rows_selected": only, "device": info,
             "matmul_peak": peak, "rows": [],
             "compiler_options": xla_options.compiler_options(),
             "memory": {}, "skipped": [], "complete": False}

  def save():
    info["load_average_after"] = timing.device_info().get("load_average")
    results["wall_seconds"] = time.time() - started
    if checkpoint:
      checkpoint(results)

  def add_row(row):
    results["rows"].append(row)
    save()

  for family in families:
    _, family_skipped = benchmark_family(
        family, quick, peak["median_gflops"], log, conv, known_flops, add_row,
        only, dense)
    results["skipped"] += family_skipped
    save()
    if with_torch and not family_skipped:
      torch_results = run_torch([family], quick, log, only, torch_seconds)
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
  parser.add_argument("--torch-seconds", type=float, default=30.0,
                      help="time budget of each PyTorch row's samples (at "
                           "least 3 samples; default 30)")
  parser.add_argument("--problems", default=",".join(problems.FAMILIES),
                      help=f"comma-separated subset of {problems.FAMILIES}")
  parser.add_argument("--rows", default="",
                      help="only rows whose name contains one of these "
                           "comma-separated parts, e.g. '20-way,5-step 1st'")
  parser.add_argument("--memory", default="sine",
                      help="families for the memory sweep ('' for none)")
  parser.add_argument("--no-memory", action="store_true")
  parser.add_argument("--memory-steps", default="",
                      help="inner-step counts of the memory sweep, e.g. 1,5,25")
  parser.add_argument("--conv", default="auto",
                      choices=("auto",) + xla_options.CONVS,
                      help="formulations.conv of the Omniglot rows (auto: "
                           "the preset's, fast on CPU, im2col elsewhere)")
  parser.add_argument("--dense", default="auto",
                      choices=("auto",) + xla_options.DENSES,
                      help="formulations.dense of the sine rows, the MLP's "
                           "layer product (auto: the preset's, fast on CPU, "
                           "plain elsewhere; metajax/backend.py)")
  parser.add_argument("--flops-only", action="store_true",
                      help="only count FLOPs; writes flops.json into --out")
  parser.add_argument("--flops-for", default="",
                      help="with --flops-only: count the program that this "
                           "backend (e.g. gpu) runs, built with its "
                           "formulations (metajax.backend.for_backend); "
                           "lowered here")
  parser.add_argument("--flops-from", default="",
                      help="a results or flops JSON whose metajax rows give "
                           "the FLOPs of rows of the same name")
  args = parser.parse_args(argv)
  families = [f for f in args.problems.split(",") if f]
  memory_families = [] if args.no_memory else [
      f for f in args.memory.split(",") if f]
  for family in families + memory_families:
    if family not in problems.FAMILIES:
      parser.error(f"unknown problem {family!r}; expected {problems.FAMILIES}")
  if args.torch_seconds <= 0:
    parser.error(f"--torch-seconds must be positive, got {args.torch_seconds}")
  memory_steps = [int(s) for s in args.memory_steps.split(",") if s]
  out = args.out or os.path.join(PACKAGE_DIR, "results", timing.device_slug())
  if args.flops_for and not args.flops_only:
    parser.error("--flops-for needs --flops-only")
  if args.flops_only:
    counts = count_flops(families, args.quick, args.conv, dense=args.dense,
                         backend_name=args.flops_for)
    counts["backend_choices_for"] = args.flops_for or counts["device"][
        "platform"]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "flops.json")
    with open(path, "w") as f:
      json.dump(counts, f, indent=1)
    print(f"wrote {path}")
    return counts
  known_flops = read_flops(args.flops_from) if args.flops_from else None
  results = run_suite(families, args.quick, args.torch, memory_families,
                      memory_steps=memory_steps or None,
                      checkpoint=lambda r: report.write_all(r, out),
                      conv=args.conv, known_flops=known_flops,
                      only=args.rows, dense=args.dense,
                      torch_seconds=args.torch_seconds)
  written = [os.path.basename(p) for p in report.write_all(results, out)]
  print(f"wrote {', '.join(written)} into {out}")
  return results


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()  # see metajax/host_memory.py
  main()
