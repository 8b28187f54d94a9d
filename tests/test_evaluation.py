"""Meta-test evaluation with diverged tasks: counted, a median that stays
defined, the mean as computed, and NaN/inf written readably to JSON.

A fine-tuning that diverges on a few of 600 tasks makes the mean inf or NaN
(docs/reproductions.md has such runs); the summary reports that mean as it
is, beside the median and the count of non-finite tasks.
"""
import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax as mj
from metajax.core.evaluation import (
    adaptation_curves, diverged_tasks, mean_and_interval, summarize_curves)
from metajax.training.run_io import read_json, write_json

NAN, INF = float("nan"), float("inf")


def _same(actual, expected):
  """Equal floats, NaN equal to NaN (and nothing else)."""
  return (math.isnan(actual) and math.isnan(expected)) or actual == expected


@pytest.mark.parametrize("values,mean,ci95,median,num_nonfinite", [
    # std (ddof 1) of 1..4 is sqrt(5/3); the interval is 1.96 std / sqrt(4).
    ([1., 2., 3., 4.], 2.5, 0.98 * math.sqrt(5 / 3), 2.5, 0),
    # One diverged task: the mean is inf, the median the middle finite one.
    ([1., 2., INF], INF, NAN, 2., 1),
    ([-INF, 1., 2.], -INF, NAN, 1., 1),
    # NaN counts as +inf for the median: sorted 1, 2, 3, inf, inf.
    ([3., NAN, 1., INF, 2.], NAN, NAN, 3., 2),
    ([NAN, NAN, 1.], NAN, NAN, INF, 2),
    ([5.], 5., NAN, 5., 0),  # one task: no interval
])
def test_mean_and_interval_counts_nonfinite_tasks(values, mean, ci95, median,
                                                  num_nonfinite):
  with warnings.catch_warnings():  # non-finite values are expected: quiet
    warnings.simplefilter("error")
    got = mean_and_interval(np.asarray(values, np.float32))
  assert got.keys() == {"mean", "ci95", "median", "num_nonfinite"}
  assert all(type(got[k]) is float for k in ("mean", "ci95", "median"))
  assert got["num_nonfinite"] == num_nonfinite
  assert _same(got["mean"], mean), got
  assert _same(got["median"], median), got
  if math.isnan(ci95):
    assert math.isnan(got["ci95"]), got
  else:
    np.testing.assert_allclose(got["ci95"], ci95, rtol=1e-12)


# y = w x, one point per task, support = query, SGD at rate 1/4 from w = 1:
# w <- w - (1/4) 2 x (w x - y), so the loss after 0, 1, 2 steps is known.
_X = [1.0, 1.5, 0.5, 1.0, NAN]
_Y = [0.0, 0.0, 0.0, 1e30, 0.0]  # (w - 1e30)^2 overflows float32: inf
EXPECTED_LOSSES = np.array([
    [1.0, 0.25, 0.0625],          # x = 1: w = 1, 1/2, 1/4
    [2.25, 0.03515625, 0.00054931640625],  # x = 3/2: w *= -1/8
    [0.25, 0.19140625, 0.14654541015625],   # x = 1/2: w *= 7/8
    [INF, INF, INF],              # diverged
    [NAN, NAN, NAN],              # a NaN input
], np.float32)


def _curves():
  loss_fn = lambda params, batch: jnp.mean(
      (params["w"] * batch[0] - batch[1]) ** 2)
  inner = mj.InnerLoop(loss_fn=loss_fn, num_steps=1, learning_rate=0.25)
  points = (jnp.array(_X, jnp.float32).reshape(5, 1, 1),
            jnp.array(_Y, jnp.float32).reshape(5, 1, 1))
  tasks = mj.TaskBatch(points, points)
  # chunk_size 2: three chunks, the last padded (pad tasks are dropped).
  return adaptation_curves({"w": jnp.float32(1.0)}, inner, tasks,
                           max_steps=2, chunk_size=2)


def test_adaptation_curves_keep_diverged_tasks():
  curves = _curves()
  assert curves.keys() == {"loss", "support_loss"}
  assert curves["loss"].shape == (5, 3)
  np.testing.assert_array_equal(curves["loss"], EXPECTED_LOSSES)
  # Support = query here, so the support loss is the same curve.
  np.testing.assert_array_equal(curves["support_loss"], EXPECTED_LOSSES)


def test_summary_reports_diverged_tasks(tmp_path):
  summary = summarize_curves(_curves(), steps=(0, 2))["loss"]
  assert summary.keys() == {"step_0", "step_2"}
  for got in summary.values():
    assert got["num_nonfinite"] == 2
    assert got["num_diverged"] == 2  # the inf and the NaN task
    assert math.isnan(got["mean"]) and math.isnan(got["ci95"])
  # Sorted with NaN as +inf, the middle one: the third finite loss (step 0:
  # 0.25, 1, 2.25, inf, inf; step 2: 0.00055, 0.0625, 0.1465, inf, inf).
  assert summary["step_0"]["median"] == 2.25
  assert summary["step_2"]["median"] == 0.14654541015625
  # Without the NaN task the mean is inf, and written as such.
  finite_and_inf = mean_and_interval(EXPECTED_LOSSES[:4, 2])
  assert finite_and_inf["mean"] == INF and finite_and_inf["num_nonfinite"] == 1

  # results.json is written by `run_io.write_json`: strict JSON (no bare NaN
  # or Infinity, which many readers reject), non-finite numbers as text.
  path = tmp_path / "results.json"
  write_json(str(path), {"evaluation": {"K=1": summary},
                         "inf": finite_and_inf})
  def reject(token):
    raise ValueError(f"non-standard JSON token {token}")
  loaded = json.loads(path.read_text(), parse_constant=reject)
  assert read_json(str(path)) == loaded
  step_0 = loaded["evaluation"]["K=1"]["step_0"]
  assert step_0 == {"mean": "nan", "ci95": "nan", "median": 2.25,
                    "num_nonfinite": 2, "num_diverged": 2}
  assert loaded["inf"]["mean"] == "inf"
  assert math.isnan(float(step_0["mean"]))
  assert float(loaded["inf"]["mean"]) == INF


def test_diverged_tasks_are_those_whose_support_loss_explodes():
  support_loss = np.array([
      [1.0, 0.5, 0.2, 0.1],      # converges
      [1.0, 5.0, 9.0, 9.5],      # grows, but under 10x its start
      [1.0, 3.0, 11.0, 2.0],     # past 10x at step 2: diverged from then on
      [2.0, INF, 1.0, 1.0],      # non-finite at step 1
      [0.0, 1e-3, 0.005, 0.02],  # from a perfect start: 0.02 > 10 x 1e-3
  ])
  np.testing.assert_array_equal(diverged_tasks(support_loss), [
      [False, False, False, False],
      [False, False, False, False],
      [False, False, True, True],
      [False, True, True, True],
      [False, False, False, True],
  ])
  curves = {"loss": support_loss[:, ::-1].copy(), "support_loss": support_loss}
  summary = summarize_curves(curves, steps=(0, 1, 3))
  assert summary.keys() == {"loss"}  # the support loss is not reported
  assert [summary["loss"][f"step_{n}"]["num_diverged"] for n in (0, 1, 3)] == [
      0, 1, 3]


def test_line_search_keeps_a_too_large_rate_from_diverging():
  # Loss (w x - y)^2 with x = 3 has curvature 18 > 2 / rate = 8: plain SGD
  # multiplies the error by |1 - 0.25 * 18| = 3.5 per step; with the line
  # search the support loss never rises and reaches the minimum.
  loss_fn = lambda params, batch: jnp.mean(
      (params["w"] * batch[0] - batch[1]) ** 2)
  points = (jnp.full((1, 1, 1), 3.0), jnp.zeros((1, 1, 1)))
  tasks = mj.TaskBatch(points, points)
  start = {"w": jnp.float32(1.0)}
  plain = mj.InnerLoop(loss_fn=loss_fn, num_steps=1, learning_rate=0.25)
  searched = mj.InnerLoop(
      loss_fn=loss_fn, num_steps=1,
      optimizer=mj.with_line_search(optax.sgd(0.25)))
  grown = adaptation_curves(start, plain, tasks, max_steps=4)["loss"][0]
  np.testing.assert_allclose(grown, 9.0 * 3.5 ** (2 * np.arange(5)),
                             rtol=1e-5)
  shrunk = adaptation_curves(start, searched, tasks, max_steps=4)["loss"][0]
  assert np.all(np.diff(shrunk) < 0), shrunk
  assert shrunk[-1] < 1e-3 * shrunk[0], shrunk
