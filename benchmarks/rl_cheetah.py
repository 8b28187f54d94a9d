"""MAML-RL meta-iteration timing on half-cheetah velocity (brax physics).

One meta-iteration: tasks x trajectories x horizon steps of brax's
half-cheetah sampled before and after one inner policy-gradient step, the
second-order meta-gradient (the chosen estimator) and the outer Adam
update, in one jitted call. The paper's size is 40 tasks x 20 trajectories
x 200 steps (x 2 rollouts: 320,000 physics steps); smaller sizes are for
machines where that is too slow. Needs brax (`pip install -e ".[rl]"`).

  python -m benchmarks.rl_cheetah [--sizes 4x5x50,40x20x200]
      [--backend mjx] [--estimator lvc] [--out DIR]

Prints and writes `rl_cheetah.json` into `--out` (default
`benchmarks/results/<device>/`): per size, the median and quartiles of ms
per meta-iteration after warm-up (`timing.time_stateful`), the compile
time apart (`timing.time_compile`), the physics steps per second, the
device and the load average. Timings on a shared machine are inflated; the
JSON keeps the load seen.
"""
import argparse

from benchmarks import timing
from experiments import cheetah_vel_maml_rl
from metajax.training import trainer
from metajax.training.config import override


def parse_size(text: str) -> tuple:
  """"TASKSxTRAJECTORIESxHORIZON" -> three positive integers."""
  parts = tuple(int(p) for p in text.lower().split("x"))
  if len(parts) != 3 or min(parts) < 1:
    raise ValueError(f"a size is TASKSxTRAJECTORIESxHORIZON, got {text!r}")
  return parts


def benchmark(size: tuple, backend: str, estimator: str,
              samples: int) -> dict:
  """One row: compile seconds and ms per meta-iteration at `size`."""
  tasks, trajectories, horizon = size
  config = override(cheetah_vel_maml_rl.get_config(), {
      "outer.meta_batch_size": tasks, "algorithm.trajectories": trajectories,
      "task.horizon": horizon, "task.backend": backend,
      "algorithm.estimator": estimator,
      "formulations.prefetch_tasks": "false"})
  run = trainer.build_run(config)
  lower_s, compile_s, _ = timing.time_compile(
      lambda: run.step_fn.lower(run.state))
  summary, _ = timing.time_stateful(run.step_fn, run.state, warmup=2,
                                    samples=samples, target_seconds=0.0,
                                    max_seconds=120.0)
  physics_steps = 2 * tasks * trajectories * horizon  # before and after
  return {"meta_batch_size": tasks, "trajectories": trajectories,
          "horizon": horizon, "backend": backend, "estimator": estimator,
          "physics_steps": physics_steps, "lower_seconds": lower_s,
          "compile_seconds": compile_s, "ms_per_meta_iteration": summary,
          "physics_steps_per_second":
              physics_steps / (summary["median_ms"] / 1e3)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="4x5x50",
                      help="comma-separated TASKSxTRAJECTORIESxHORIZON")
  parser.add_argument("--backend", default="mjx")
  parser.add_argument("--estimator", default="lvc")
  parser.add_argument("--samples", type=int, default=5,
                      help="timed meta-iterations per size (at most)")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  sizes = [parse_size(text) for text in args.sizes.split(",")]
  load_before = timing.device_info().get("load_average")
  rows = []
  for size in sizes:
    row = benchmark(size, args.backend, args.estimator, args.samples)
    ms = row["ms_per_meta_iteration"]
    print(f"{'x'.join(map(str, size)):>12s} {ms['median_ms']:10.1f} ms "
          f"(p25 {ms['p25_ms']:.1f}, p75 {ms['p75_ms']:.1f}, "
          f"{ms['samples']} samples); {row['physics_steps_per_second']:.0f} "
          f"physics steps/s; compile {row['compile_seconds']:.1f} s",
          flush=True)
    rows.append(row)
  info = timing.write_rows(rows, "rl_cheetah.json", args.out, load_before)
  print(f"device: {info['device_kind']}, load {info.get('load_average')}")


if __name__ == "__main__":
  main()
