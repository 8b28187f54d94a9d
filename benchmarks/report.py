"""Writes the suite's results: JSON, a Markdown table and the memory plot."""
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

MIB = 2.0**20


def row_line(row: dict) -> str:
  """One console line for a timed row."""
  ms = row["ms_per_step"]
  extra = ""
  if row.get("flops_per_step"):
    extra = (f", {row['gflops_per_second']:.2f} GFLOP/s "
             f"({100 * row['fraction_of_matmul_peak']:.1f}% of peak)")
  return (f"{row['framework']:>14} {row['name']:<40} {ms['median_ms']:9.3f} ms "
          f"[{ms['p25_ms']:.3f}-{ms['p75_ms']:.3f}]{extra}")


def _cell(value, fmt):
  return "-" if value is None else format(value, fmt)


def _products(rows) -> str:
  """Which MLP product and Conv4 convolution the metajax rows used."""
  used = sorted({f"{key}={row[key]}" for row in rows
                 for key in ("dense", "conv") if row.get(key)})
  return ", ".join(f"`{u}`" for u in used) or "(not recorded)"


def markdown(results: dict) -> str:
  """The results as a Markdown report with one table per section."""
  info, peak = results["device"], results["matmul_peak"]
  lines = [
      f"# Meta-step benchmarks on {info['device_kind']}", "",
      f"- created {results['created']}, jax {info['jax']}, "
      f"{info['cpu_count']} CPUs, load average before "
      f"{info.get('load_average')} and after "
      f"{info.get('load_average_after')}"
      + (" (quick sizes: not comparable)" if results["quick"] else "")
      + ("" if results.get("complete", True) else " (INCOMPLETE: cut short)"),
      f"- XLA_FLAGS: `{info['xla_flags'] or '(unset)'}`; GLIBC_TUNABLES: "
      f"`{info.get('glibc_tunables') or '(unset)'}`",
      f"- matmul peak measured in this run: {peak['median_gflops']:.1f} "
      f"GFLOP/s ({peak['size']}^3 {peak['dtype']}, median)",
      "- ms per meta-step: median [25th-75th percentile]; fused rows run "
      "`steps_per_call` meta-steps per call and report per meta-step",
      "- FLOPs: XLA cost analysis of the step with its loops unrolled",
      f"- layer products: {_products(results['rows'])}; XLA compile options "
      f"of metajax's steps: `{results.get('compiler_options', '(not recorded)')}`",
      "",
      "| framework | problem | data | ms/step | tasks/s | compile s "
      "| MFLOP/step | GFLOP/s | % peak |",
      "|---|---|---|---|---|---|---|---|---|"]
  for row in results["rows"]:
    ms = row["ms_per_step"]
    flops = row.get("flops_per_step")
    fraction = row.get("fraction_of_matmul_peak")
    lines.append(
        f"| {row['framework']} | {row['name']} | {row['data']} "
        f"| {ms['median_ms']:.3f} [{ms['p25_ms']:.3f}-{ms['p75_ms']:.3f}] "
        f"| {row['tasks_per_second']:.0f} "
        f"| {_cell(row.get('compile_seconds'), '.2f')} "
        f"| {_cell(flops and flops / 1e6, '.2f')} "
        f"| {_cell(row.get('gflops_per_second'), '.2f')} "
        f"| {_cell(fraction and 100 * fraction, '.3g')} |")
  lines += speedup_lines(results["rows"])
  for family, variants in results["memory"].items():
    lines += ["", f"## Memory of one meta-step, {family} (MiB: temp + "
              "argument + output of the compiled step; in brackets the "
              "process's device peak after the step, where reported: '<=' "
              "when the step did not raise it, e.g. below compile scratch)",
              "", "| inner steps | " + " | ".join(variants) + " |",
              "|---|" + "---|" * len(variants)]
    steps = sorted({r["inner_steps"] for rows in variants.values()
                    for r in rows})
    for s in steps:
      cells = []
      for rows in variants.values():
        row = next((r for r in rows if r["inner_steps"] == s), None)
        cell = "-" if row is None else f"{row['total_bytes'] / MIB:.2f}"
        if row is not None and "device_peak_bytes" in row:
          bound = "" if row.get("device_peak_set_by_step") else "<= "
          cell += f" (peak {bound}{row['device_peak_bytes'] / MIB:.1f})"
        cells.append(cell)
      lines.append(f"| {s} | " + " | ".join(cells) + " |")
  if results.get("notes"):
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
  if results["skipped"]:
    lines += ["", "## Skipped", ""] + [f"- {s}" for s in results["skipped"]]
  return "\n".join(lines) + "\n"


def speedup_lines(rows) -> list:
  """A table of PyTorch ms / metajax ms per metajax row (fused rows against
  their unfused PyTorch twin); empty without PyTorch rows."""
  torch_ms = {(r["framework"], r["name"]): r["ms_per_step"]["median_ms"]
              for r in rows if r["framework"] != "metajax"}
  if not torch_ms:
    return []
  frameworks = sorted({framework for framework, _ in torch_ms})
  lines = ["", "## PyTorch ms / metajax ms, same run (above 1: metajax "
           "faster)", "", "| metajax row | metajax ms | "
           + " | ".join(frameworks) + " |",
           "|---|---|" + "---|" * len(frameworks)]
  for row in rows:
    if row["framework"] != "metajax":
      continue
    ms, base = row["ms_per_step"]["median_ms"], row["name"].split(" fused")[0]
    cells = [_cell(torch_ms.get((f, base)) and torch_ms[(f, base)] / ms, ".2f")
             for f in frameworks]
    lines.append(f"| {row['name']} | {ms:.3f} | " + " | ".join(cells) + " |")
  return lines


def plot_memory(memory: dict, path: str):
  """Memory against inner steps, one panel per problem family."""
  families = list(memory) or ["(none)"]
  fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4),
                           squeeze=False)
  for ax, family in zip(axes[0], families):
    for variant, rows in memory.get(family, {}).items():
      steps = [r["inner_steps"] for r in rows]
      line, = ax.plot(steps, [r["total_bytes"] / MIB for r in rows], "o-",
                      label=f"{variant} (compiled)")
      # Device peaks only where the step itself set them (see memory.py).
      peaks = [r for r in rows if r.get("device_peak_set_by_step")]
      if peaks:
        ax.plot([r["inner_steps"] for r in peaks],
                [r["device_peak_bytes"] / MIB for r in peaks], "x--",
                color=line.get_color(), label=f"{variant} (device peak)")
    ax.set(xscale="log", xlabel="inner steps", ylabel="MiB",
           title=f"meta-step memory, {family}")
    if memory.get(family):
      ax.legend()
    ax.grid(True, alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_all(results: dict, out_dir: str) -> list:
  """Writes results.json, results.md and (when the run has a memory sweep)
  memory.png; returns the paths written."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, n)
           for n in ("results.json", "results.md", "memory.png")]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=1)
  with open(paths[1], "w") as f:
    f.write(markdown(results))
  if not results.get("memory"):
    return paths[:2]
  plot_memory(results["memory"], paths[2])
  return paths
