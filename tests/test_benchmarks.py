"""The benchmark suite on tiny sizes: well-formed results, never timings."""
import json
import math
import os

import jax
import pytest

from benchmarks import memory, pick_conv, problems, report, suite, timing
from metajax import backend as formulations


def _positive_finite(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results():
  # iMAML's memory row is left out only to stay fast; it compiles the same way.
  return suite.run_suite(families=("sine",), quick=True,
                         memory_families=("sine",), log=lambda _: None,
                         memory_variants=("maml", "maml-remat"))


def test_rows_are_well_formed(results):
  rows = results["rows"]
  assert [r["name"] for r in rows] == [c.name for c in problems.cases(
      "sine", quick=True)]
  assert any(r["steps_per_call"] > 1 for r in rows)
  for row in rows:
    assert row["framework"] == "metajax"
    for key in ("median_ms", "p25_ms", "p75_ms", "min_ms", "max_ms"):
      assert _positive_finite(row["ms_per_step"][key]), key
    ms = row["ms_per_step"]
    assert ms["min_ms"] <= ms["p25_ms"] <= ms["median_ms"] <= ms["p75_ms"]
    for key in ("tasks_per_second", "compile_seconds", "lower_seconds",
                "flops_per_step", "gflops_per_second",
                "fraction_of_matmul_peak"):
      assert _positive_finite(row[key]), key
    assert row["flops_method"] == "xla-unrolled-hlo"
    assert row["dense"] == formulations.for_backend().dense
    assert row["conv"] is None


def test_tasks_given_row_times_the_step_without_its_sampler(results):
  fused, given = results["rows"]
  assert (fused["tasks_given"], given["tasks_given"]) == (False, True)
  assert given["inner_steps"] == fused["inner_steps"]
  assert given["steps_per_call"] == 1
  # Same meta-step, but no task sampling inside it: fewer FLOPs per step.
  assert 0 < given["flops_per_step"] < fused["flops_per_step"]
  assert "drawn before timing" in given["data"]
  fused_run, _ = problems.build(problems.sine_config(
      True, outer__steps_per_call=2), quick=True)
  with pytest.raises(ValueError, match="outer.steps_per_call"):
    problems.with_tasks_given(fused_run)
  given_run, _ = problems.build(problems.sine_config(True), tasks_given=True)
  assert not given_run.prefetch


def test_a_prefetching_step_is_timed_with_its_tasks_carried():
  run, _ = problems.build(problems.sine_config(True), quick=True)
  # The CPU preset prefetches an unfused step's tasks; elsewhere it does not.
  assert run.prefetch == formulations.for_backend().prefetch_tasks
  step, carry = problems.stateful_step(run)
  summary, carry = timing.time_stateful(step, carry, warmup=2, samples=3,
                                        target_seconds=0.001, max_seconds=1.0)
  state = carry[0] if run.prefetch else carry
  # The compiling call, calibration and 3 samples each advanced the state.
  assert int(state.step) >= 2 + 3 * summary["calls_per_sample"]
  assert run.step_fn.cache_size() == 1  # Compiled once, tasks carried.


def test_dense_option_reaches_the_sine_rows(results):
  rows, _ = suite.benchmark_family("sine", True, 1.0, log=lambda _: None,
                                   dense="plain")
  assert [r["dense"] for r in rows] == ["plain"] * len(rows) and rows
  assert "`dense=plain`" in report.markdown(dict(results, rows=rows))


def test_flops_count_every_inner_step():
  counts = {}
  for steps in (1, 3):
    run, _ = problems.build(problems.sine_config(True, inner__steps=steps))
    lower = lambda: run.step_fn.lower(run.state)  # pylint: disable=cell-var-from-loop
    lower()  # A cached trace must not hide the unrolled one.
    counts[steps] = timing.flops_per_call(lower)["flops"]
    rolled = lower().cost_analysis()["flops"]  # Re-traced, loops rolled.
    assert rolled < counts[steps] or steps == 1
  # XLA alone counts a loop body once; unrolled, 3 steps cost clearly more.
  assert counts[3] > 1.5 * counts[1]


def test_device_peak_and_memory(results):
  assert results["device"]["device_kind"]
  assert _positive_finite(results["matmul_peak"]["median_gflops"])
  sweeps = results["memory"]["sine"]
  assert results["complete"]
  assert set(sweeps) == {"maml", "maml-remat"}
  for rows in sweeps.values():
    assert [r["inner_steps"] for r in rows] == list(memory.QUICK_STEPS)
    for row in rows:
      assert _positive_finite(row["total_bytes"])
      assert row["total_bytes"] == (row["temp_bytes"] + row["argument_bytes"]
                                    + row["output_bytes"])


def test_writes_json_markdown_and_plot(results, tmp_path):
  paths = report.write_all(results, str(tmp_path))
  assert [os.path.basename(p) for p in paths] == [
      "results.json", "results.md", "memory.png"]
  with open(paths[0]) as f:
    assert json.load(f)["rows"][0]["name"] == results["rows"][0]["name"]
  text = open(paths[1]).read()
  assert "| framework |" in text and results["rows"][0]["name"] in text
  assert os.path.getsize(paths[2]) > 1000


def test_a_run_without_memory_sweep_writes_no_plot(results, tmp_path):
  no_memory = dict(results, memory={})
  paths = report.write_all(no_memory, str(tmp_path))
  assert [os.path.basename(p) for p in paths] == ["results.json", "results.md"]
  assert not os.path.exists(tmp_path / "memory.png")


def test_omniglot_rows_skip_cleanly_without_conv4(monkeypatch):
  monkeypatch.setattr(problems, "conv4_missing", lambda: "no Conv4 here")
  rows, skipped = suite.benchmark_family("omniglot5", True, 1.0,
                                         log=lambda _: None)
  assert rows == [] and "no Conv4 here" in skipped[0]


def test_flops_counted_once_are_reused_by_a_later_run(tmp_path):
  counts = suite.main(["--quick", "--problems", "sine", "--flops-only",
                       "--out", str(tmp_path)])
  assert len(counts["rows"]) == 2
  assert all(_positive_finite(r["flops_per_step"]) for r in counts["rows"])
  path = str(tmp_path / "flops.json")
  results = suite.main(["--quick", "--problems", "sine", "--no-memory",
                        "--flops-from", path, "--out", str(tmp_path / "run")])
  assert [r["name"] for r in results["rows"]] == [
      r["name"] for r in counts["rows"]]
  for row, timed in zip(counts["rows"], results["rows"]):
    assert timed["flops_per_step"] == row["flops_per_step"]
    assert timed["flops_method"].endswith(f"(from {path})")


def test_flops_for_another_backend_count_that_backends_program(tmp_path):
  # The GPU's formulations (im2col conv, no folded norm, pairwise pooling)
  # differ from CPU's, so its program and FLOPs differ; counting it here
  # must not switch this process's backend.
  backend = jax.default_backend()
  here, gpu = [suite.main(["--quick", "--problems", "omniglot5",
                           "--flops-only", "--out", str(tmp_path / name)]
                          + (["--flops-for", name] if name else []))
               for name in ("", "gpu")]
  assert jax.default_backend() == backend
  assert gpu["backend_choices_for"] == "gpu"
  assert here["backend_choices_for"] == backend
  assert gpu["rows"][0]["conv"] == formulations.for_backend("gpu").conv
  assert here["rows"][0]["conv"] == formulations.for_backend().conv
  if backend == "cpu":
    assert (here["rows"][0]["flops_per_step"]
            != gpu["rows"][0]["flops_per_step"])
  with pytest.raises(SystemExit):
    suite.main(["--quick", "--flops-for", "gpu"])  # needs --flops-only
  with pytest.raises(SystemExit):
    suite.main(["--quick", "--torch-seconds", "0"])


def test_row_selection_keeps_the_named_rows_only():
  full = problems.cases("sine") + problems.cases("omniglot20")
  picked = problems.select(full, "20-way, 5-step 1st fused")
  assert [c.name for c in picked] == [
      "sine 5-step 1st fused x10", "omniglot 20-way 1-shot 5-step 2nd",
      "omniglot 20-way 1-shot 5-step 1st"]
  assert problems.select(full, "") == full
  assert problems.select(full, "no such row") == []


def test_speedup_table_divides_pytorch_by_metajax_time():
  def row(framework, name, ms):
    return {"framework": framework, "name": name, "ms_per_step": {
        "median_ms": ms}}
  lines = report.speedup_lines([
      row("metajax", "sine 1-step 2nd", 0.5),
      row("metajax", "sine 1-step 2nd fused x10", 0.25),
      row("metajax", "omniglot 5-way 1-shot 1-step 2nd", 100.0),
      row("torch loop", "sine 1-step 2nd", 10.0),
      row("torch.func", "sine 1-step 2nd", 2.0)])
  assert lines[5:] == [
      "| sine 1-step 2nd | 0.500 | 20.00 | 4.00 |",
      "| sine 1-step 2nd fused x10 | 0.250 | 40.00 | 8.00 |",
      "| omniglot 5-way 1-shot 1-step 2nd | 100.000 | - | - |"]
  assert report.speedup_lines([row("metajax", "sine 1-step 2nd", 0.5)]) == []


def test_pick_conv_times_each_formulation_and_names_the_fastest():
  result = pick_conv.pick(problems.omniglot_config(5, quick=True),
                          ["fast", "im2col"], quick=True, log=lambda _: None)
  timings = result["timings"]
  assert set(timings) == {"fast", "im2col"}
  assert all(_positive_finite(t["median_ms"]) for t in timings.values())
  assert timings[result["best"]]["median_ms"] == min(
      t["median_ms"] for t in timings.values())


def test_strided_omniglot_family_times_the_strided_conv4():
  rows, skipped = suite.benchmark_family("omniglot5s", True, 1.0,
                                         log=lambda _: None, conv="im2col")
  (row,) = rows
  assert skipped == [] and "strided" in row["name"] and row["conv"] == "im2col"
  (case,) = problems.cases("omniglot5s", quick=True)
  assert case.config.model.NAME == "conv4" and case.config.model.strided
  assert _positive_finite(row["ms_per_step"]["median_ms"])
  assert _positive_finite(row["flops_per_step"])


def test_random_omniglot_problem_times_steps_but_does_not_evaluate():
  config = problems.omniglot_config(5, quick=True)
  problem = problems.random_omniglot_problem(config, 8)
  assert problem.kind == "classification" and problem.num_classes == 2
  for evaluate in (lambda: problem.evaluate(None, None),
                   lambda: problem.eval_tasks("test")):
    with pytest.raises(NotImplementedError, match="benchmark Problem"):
      evaluate()


def test_conv_and_dense_options_become_formulations_overrides():
  (auto,) = problems.cases("omniglot5", quick=True)
  (im2col,) = problems.cases("omniglot5", quick=True, conv="im2col")
  assert auto.config.formulations.conv == ""  # the preset's choice
  assert im2col.config.formulations.conv == "im2col"
  plain = problems.cases("sine", quick=True, dense="plain")
  assert {c.config.formulations.dense for c in plain} == {"plain"}
  variant = memory.VARIANTS["maml-remat"]
  assert problems.changed(problems.sine_config(True), variant).inner.remat
