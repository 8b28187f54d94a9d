"""Which Conv4 formulation (`formulations.conv`) gives the fastest meta-step.

  python -m benchmarks.pick_conv                    # the suite's Omniglot row
  python -m benchmarks.pick_conv --experiment omniglot_5way1shot \
      --overrides outer.steps_per_call=10,run.pre_metrics=false

Times one meta-step config with each formulation in `--convs` (median ms per
meta-step after warm-up, compile seconds apart), prints a line for each and,
last, the fastest's name alone, so that a script can pass it on
(`--formulations.conv=$(python -m benchmarks.pick_conv | tail -1)`). On CPU
`fast` wins (benchmarks/NOTES_conv.md); elsewhere `fast` lowers to what vmap
of `lax.conv_general_dilated` gives (grouped convolutions), and `im2col` to
batched matmuls, which an H200 ran 1.6-11x faster (so the portable preset,
every backend but CPU's, picks it).
"""
import argparse
import json
import time

import jax

from benchmarks import problems, timing
from metajax.training import host_memory
from metajax.training import trainer as train
from metajax.training.config import override
from metajax.training.cli import load_experiment


def time_config(config, quick: bool = False) -> dict:
  """`{"median_ms", "compile_seconds"}` of one meta-step of `config`."""
  if config.task.NAME == "omniglot" and config.task.data_dir:
    run = train.build_run(config)
  else:
    run, _ = problems.build(config, quick)
  start = time.perf_counter()  # The first call's tasks are drawn here.
  step, carry = problems.stateful_step(run)
  carry, _ = step(carry)
  jax.block_until_ready(carry)
  compile_seconds = time.perf_counter() - start
  summary, _ = timing.time_stateful(
      step, carry, warmup=1 if quick else 3, samples=3 if quick else 10,
      target_seconds=0.002 if quick else 0.05,
      max_seconds=1.0 if quick else 10.0)
  return {"median_ms": summary["median_ms"] / config.outer.steps_per_call,
          "compile_seconds": compile_seconds}


def pick(config, convs, quick: bool = False, log=print) -> dict:
  """`{"best": name, "timings": {name: time_config(...)}}` over `convs`."""
  timings = {}
  for conv in convs:
    timings[conv] = time_config(
        override(config, {"formulations.conv": conv}), quick)
    log(f"{conv:>10}: {timings[conv]['median_ms']:.3f} ms per meta-step "
        f"(compile {timings[conv]['compile_seconds']:.1f} s)")
  best = min(timings, key=lambda name: timings[name]["median_ms"])
  return {"best": best, "timings": timings}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--convs", default="fast,im2col")
  parser.add_argument("--experiment", default="",
                      help="time this experiment's config (default: the "
                           "suite's Omniglot 5-way 1-step 2nd-order row)")
  parser.add_argument("--overrides", default="",
                      help="comma-separated section.field=value for the "
                           "experiment, e.g. outer.steps_per_call=10")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", default="", help="also write the JSON here")
  args = parser.parse_args(argv)
  if args.experiment:
    overrides = dict(item.split("=", 1)
                     for item in args.overrides.split(",") if item)
    config = override(load_experiment(args.experiment), overrides)
    if config.task.NAME == "omniglot" and not config.task.data_dir:
      config = override(
          config, {"task.data_dir": problems.omniglot_data_dir() or ""})
  else:
    config = problems.omniglot_config(5, args.quick)
  result = pick(config, [c for c in args.convs.split(",") if c], args.quick)
  result.update(device=timing.device_info(),
                config=args.experiment or "suite omniglot 5-way 1-step 2nd")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  print(result["best"])
  return result


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()  # see metajax/host_memory.py
  main()
