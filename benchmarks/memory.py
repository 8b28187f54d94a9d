"""Peak memory of one meta-step against the number of inner steps.

Variants: full backprop MAML, MAML with each inner step rematerialised
(`inner.remat=True`) and iMAML (implicit gradients; skipped if its module is
missing). The compiled step's `memory_analysis()` gives temp + argument +
output bytes on every backend; on an accelerator the step is also run and
the device's `peak_bytes_in_use` read. That counter never resets and counts
the compiler's scratch too, so each variant is swept in its own process, in
increasing inner steps (`python -m benchmarks.memory` prints the sweep as
JSON), and a reading is only an upper bound unless the step itself raised it
(`device_peak_set_by_step`).

  python -m benchmarks.memory --family sine --variant maml --steps 1,10,100
"""
import argparse
import json
import subprocess
import sys

import jax

from benchmarks import problems
from metajax import algorithms

STEPS = (1, 2, 5, 10, 20, 50, 100)
QUICK_STEPS = (2,)
# Config overrides of each variant (`metajax.training.config.override`).
VARIANTS = {"maml": {}, "maml-remat": {"inner.remat": True},
            "imaml": {"algorithm": "imaml"}}


def available_variants() -> list:
  """The variant names whose algorithm module exists."""
  names = algorithms.available()
  return [v for v, o in VARIANTS.items() if o.get("algorithm", "maml") in names]


def base_config(family: str, quick: bool):
  return problems.family_config(family, quick)


def device_peak_bytes():
  """The device's `peak_bytes_in_use` (None where it is not reported)."""
  stats = jax.devices()[0].memory_stats() if hasattr(
      jax.devices()[0], "memory_stats") else None
  return (stats or {}).get("peak_bytes_in_use")


def measure(config, quick: bool, execute: bool) -> dict:
  """Compiled memory (and, when `execute`, the device peak) of one step."""
  run, _ = problems.build(config, quick)
  compiled = run.step_fn.lower(run.state).compile()
  analysis = compiled.memory_analysis()
  row = {"inner_steps": config.inner.steps}
  for field in ("temp", "argument", "output", "alias"):
    row[f"{field}_bytes"] = int(getattr(analysis, f"{field}_size_in_bytes", 0))
  row["total_bytes"] = (row["temp_bytes"] + row["argument_bytes"]
                        + row["output_bytes"])
  if execute:
    before = device_peak_bytes()
    step, carry = problems.stateful_step(run)
    state, _ = step(carry)
    jax.block_until_ready(state)
    peak = device_peak_bytes()
    if peak is not None:
      row["device_peak_bytes"] = int(peak)
      # The counter is the process's peak (compiler scratch included): it
      # bounds this step's peak, and equals it only if the step raised it.
      row["device_peak_set_by_step"] = bool(peak > (before or 0))
    del state
  return row


def sweep(family: str, variant: str, steps=STEPS, quick: bool = False,
          execute: bool = False) -> list:
  """Memory rows of `variant` on `family` for each count in `steps`."""
  config = problems.changed(base_config(family, quick), VARIANTS[variant])
  return [measure(problems.changed(config, inner__steps=s), quick, execute)
          for s in sorted(steps)]


def sweep_all(families, steps=STEPS, quick: bool = False,
              variants=None) -> dict:
  """`{family: {variant: rows}}`; one subprocess per sweep off CPU."""
  isolate = jax.default_backend() != "cpu"
  results = {}
  for family in families:
    results[family] = {}
    for variant in variants or available_variants():
      if not isolate:
        results[family][variant] = sweep(family, variant, steps, quick)
        continue
      command = [sys.executable, "-m", "benchmarks.memory", "--family",
                 family, "--variant", variant, "--execute",
                 "--steps", ",".join(map(str, steps))]
      if quick:
        command.append("--quick")
      out = subprocess.run(command, check=True, capture_output=True, text=True)
      results[family][variant] = json.loads(out.stdout.strip().splitlines()[-1])
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--family", default="sine", choices=problems.FAMILIES)
  parser.add_argument("--variant", default="maml", choices=tuple(VARIANTS))
  parser.add_argument("--steps", default=",".join(map(str, STEPS)))
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--execute", action="store_true",
                      help="also run the step and read the device peak")
  args = parser.parse_args(argv)
  steps = [int(s) for s in args.steps.split(",")]
  print(json.dumps(sweep(args.family, args.variant, steps, args.quick,
                         args.execute)))


if __name__ == "__main__":
  main()
