"""Meta-training throughput (tasks/s) against the number of devices.

Second-order MAML on the sine problem (the MAML paper's model and inner
loop), the meta-batch sharded over 1, 2, 4, 8 devices with
`run.num_devices` (1 = the plain single-device step; "1s" = the sharded
step on a one-device mesh, to see the cost of sharding alone). Each count
runs in its own process, because on CPU the number of simulated devices
(XLA_FLAGS=--xla_force_host_platform_device_count) is fixed at start-up.

  python benchmarks/scaling.py --out=scaling.json
  python benchmarks/scaling.py --device_counts=1,2,4,8 --meta_batch_size=64 \\
      --steps_per_call=10 --calls=5 --repeats=5 --out=scaling.json

Prints a Markdown table and writes the rows as JSON to --out. Compile time
(the first call, compile included) is reported apart from the steady-state
throughput, the median over --repeats timed runs of --calls calls after
--warmup calls. The same command on a multi-GPU (or TPU) machine measures
real devices: the flag only affects the CPU platform, and counts above the
available devices are skipped.

Simulated CPU devices share the host's cores, so on CPU more devices go
little or no faster (on 2 shared cores they go slower; on 16 cores 2-4 of
them gave about 1.3x): the numbers show the cost of sharding, not scaling.
Only real accelerators show scaling.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CPU_NOTE = ("Simulated CPU devices share the host's cores (and one CPU "
            "device already uses several), so expect little or no speed-up: "
            "this measures sharding overhead, not real scaling.")
MARKER = "SCALING_RESULT "


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--device_counts", default="1,1s,2,4,8",
                      help='comma-separated; "1s": sharded step, one device')
  parser.add_argument("--meta_batch_size", type=int, default=32)
  parser.add_argument("--steps_per_call", type=int, default=10)
  parser.add_argument("--calls", type=int, default=5,
                      help="jitted calls per timed run")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed calls after the compiling one")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--timeout", type=int, default=600,
                      help="seconds allowed to each device count")
  parser.add_argument("--out", default="",
                      help="write the rows here as JSON")
  parser.add_argument("--child", default="",
                      help=argparse.SUPPRESS)  # Internal: one device count.
  return parser.parse_args(argv)


def measure(args) -> dict:
  """Runs in the child process: one device count, one row."""
  # pylint: disable=g-import-not-at-top
  import functools
  import jax
  from metajax.parallel import sharding
  from metajax.training import trainer as train
  from metajax.training.config import Config, override

  num_devices = int(args.child.rstrip("s"))
  row = {"devices": args.child, "platform": jax.default_backend(),
         "device_kind": jax.devices()[0].device_kind,
         "available_devices": jax.device_count(),
         "meta_batch_size": args.meta_batch_size,
         "tasks_per_device": args.meta_batch_size / num_devices,
         "steps_per_call": args.steps_per_call}
  if num_devices > jax.device_count():
    return {**row, "skipped": f"only {jax.device_count()} devices"}
  config = override(Config(), {
      "task": "sine", "algorithm": "maml", "inner.first_order": False,
      "outer.meta_batch_size": args.meta_batch_size,
      "run.num_devices": num_devices,
      "outer.steps_per_call": args.steps_per_call,
      "outer.num_meta_steps": args.steps_per_call,
      "run.log_every": args.steps_per_call})
  run = train.build_run(config)
  state, step_fn = run.state, run.step_fn
  if args.child == "1s":  # What build_run does for run.num_devices != 1.
    mesh = sharding.make_task_mesh(1)
    sharding.check_divisible(config.outer.meta_batch_size, mesh)
    make_step = functools.partial(sharding.make_sharded_meta_step, mesh=mesh)
    state = sharding.replicate_state(state, mesh)
    step_fn = make_step(
        run.algorithm.make_meta_grad(config, run.problem),
        run.outer_optimizer, task_sampler=run.problem.train_sampler,
        steps_per_call=config.outer.steps_per_call)
  elif run.prefetch:  # Each call's tasks drawn by the call before.
    prefetching = step_fn
    state = (state, prefetching.first_tasks(state))

    def step_fn(carry):
      state, tasks, metrics = prefetching(*carry)
      return (state, tasks), metrics
  start = time.perf_counter()
  state, _ = step_fn(state)
  jax.block_until_ready(state)
  row["compile_seconds"] = time.perf_counter() - start
  for _ in range(args.warmup):
    state, _ = step_fn(state)
  jax.block_until_ready(state)
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.calls):
      state, _ = step_fn(state)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    rates.append(args.meta_batch_size * args.steps_per_call * args.calls
                 / seconds)
  row["tasks_per_second"] = statistics.median(rates)
  row["tasks_per_second_runs"] = rates
  return row


def run_child(num_devices: str, args, max_devices: int) -> dict:
  env = dict(os.environ)
  flag = f"--xla_force_host_platform_device_count={max_devices}"
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
  argv = [sys.executable, os.path.abspath(__file__), f"--child={num_devices}",
          f"--meta_batch_size={args.meta_batch_size}",
          f"--steps_per_call={args.steps_per_call}", f"--calls={args.calls}",
          f"--warmup={args.warmup}", f"--repeats={args.repeats}"]
  try:
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=args.timeout, check=False)
  except subprocess.TimeoutExpired:
    return {"devices": num_devices, "skipped": f"timed out ({args.timeout} s)"}
  for line in done.stdout.splitlines():
    if line.startswith(MARKER):
      return json.loads(line[len(MARKER):])
  tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
  return {"devices": num_devices, "skipped": f"failed: {tail[0]}"}


def markdown(rows) -> str:
  base = next((r["tasks_per_second"] for r in rows
               if r["devices"] == "1" and "tasks_per_second" in r), None)
  lines = ["| devices | tasks/device | compile s | tasks/s (median) | "
           "vs 1 device |", "|---:|---:|---:|---:|---:|"]
  for r in rows:
    if "skipped" in r:
      lines.append(f"| {r['devices']} | | | skipped: {r['skipped']} | |")
      continue
    ratio = f"{r['tasks_per_second'] / base:.2f}x" if base else ""
    lines.append(f"| {r['devices']} | {r['tasks_per_device']:g} | "
                 f"{r['compile_seconds']:.1f} | {r['tasks_per_second']:,.0f} "
                 f"| {ratio} |")
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  if args.child:
    print(MARKER + json.dumps(measure(args)), flush=True)
    return
  counts = [c.strip() for c in args.device_counts.split(",")]
  max_devices = max(int(c.rstrip("s")) for c in counts)
  rows = [run_child(n, args, max_devices) for n in counts]
  measured = [r for r in rows if "platform" in r]
  platform = measured[0]["platform"] if measured else "?"
  print(f"MAML (second order) on sine, meta-batch {args.meta_batch_size}, "
        f"{args.steps_per_call} meta-steps per call, platform {platform}"
        + (f" ({measured[0]['device_kind']})" if measured else ""))
  print(markdown(rows))
  if platform == "cpu":
    print(f"\nNote: {CPU_NOTE} This host has {os.cpu_count()} CPU cores.")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"platform": platform, "cpu_cores": os.cpu_count(),
                 "note": CPU_NOTE if platform == "cpu" else "",
                 "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
