"""MAML-RL meta-iteration timing on 2D navigation at the paper's size.

One meta-iteration: 20 tasks x 20 trajectories x 100 steps sampled before
and after one inner policy-gradient step, the second-order meta-gradient
(the chosen estimator) and the outer Adam update, in one jitted call.

  python -m benchmarks.rl_navigation [--estimators lvc,dice] [--outer trpo]
      [--out DIR]

Prints and writes `rl_navigation.json` into `--out` (default
`benchmarks/results/<device>/`): per row, the median and quartiles of ms
per meta-iteration after warm-up (`timing.time_stateful`), the compile
time apart (`timing.time_compile`), the device and the load average.
Timings on a shared machine are inflated; the JSON keeps the load seen.
"""
import argparse

from benchmarks import timing
from experiments import navigation_maml_rl
from metajax.training import trainer
from metajax.training.config import override


def benchmark(estimator: str, outer_step: str, quick: bool) -> dict:
  """One row: compile seconds and ms per meta-iteration."""
  changes = {"algorithm.estimator": estimator,
             "formulations.prefetch_tasks": "false"}
  if outer_step == "trpo":
    changes.update({"algorithm.outer_step": "trpo", "outer.optimizer": "sgd",
                    "outer.lr": 1.0})
  if quick:
    changes.update({"outer.meta_batch_size": 4, "algorithm.trajectories": 5,
                    "task.horizon": 20})
  config = override(navigation_maml_rl.get_config(), changes)
  run = trainer.build_run(config)
  lower_s, compile_s, _ = timing.time_compile(
      lambda: run.step_fn.lower(run.state))
  summary, _ = timing.time_stateful(run.step_fn, run.state,
                                    warmup=2, samples=5 if quick else 15,
                                    target_seconds=0.0, max_seconds=60.0)
  return {"estimator": estimator, "outer_step": outer_step,
          "meta_batch_size": config.outer.meta_batch_size,
          "trajectories": config.algorithm.trajectories,
          "horizon": config.task.horizon, "lower_seconds": lower_s,
          "compile_seconds": compile_s, "ms_per_meta_iteration": summary}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--estimators", default="lvc,dice,surrogate")
  parser.add_argument("--outer", default="gradient",
                      help="comma-separated outer steps: gradient,trpo")
  parser.add_argument("--quick", action="store_true", help="tiny sizes")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  load_before = timing.device_info().get("load_average")
  rows = []
  for outer_step in args.outer.split(","):
    for estimator in args.estimators.split(","):
      row = benchmark(estimator, outer_step, args.quick)
      ms = row["ms_per_meta_iteration"]
      print(f"{estimator:12s} {outer_step:8s} {ms['median_ms']:8.1f} ms "
            f"(p25 {ms['p25_ms']:.1f}, p75 {ms['p75_ms']:.1f}); compile "
            f"{row['compile_seconds']:.1f} s", flush=True)
      rows.append(row)
  info = timing.write_rows(rows, "rl_navigation.json", args.out, load_before)
  print(f"device: {info['device_kind']}, load {info.get('load_average')}")


if __name__ == "__main__":
  main()
