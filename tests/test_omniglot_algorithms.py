"""Each algorithm's Omniglot budget config steps and evaluates on real tasks.

These check the wiring (config -> task -> algorithm -> meta-step ->
evaluation) on real images, not accuracy: one meta-step on two tasks and two
evaluation tasks run the budget run's program at a quarter of its width (16
filters: still 9C <= width, so the CPU formulations fold the first block's
batch norm into its conv, as at width 64).
"""
import jax
import numpy as np
import pytest

from conftest import data_dir_or_none
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.core.losses import tree_is_finite
from metajax.training.config import override

DATA_DIR = data_dir_or_none()
BUDGET_EXPERIMENTS = [name for name in main.list_experiments()
                      if name.startswith("omniglot_5way1shot_budget")]
# One experiment per algorithm steps on real data (the LSTM row is SNAIL's
# algorithm with another backbone, tested in tests/test_snail.py).
STEPPED_EXPERIMENTS = [name for name in BUDGET_EXPERIMENTS
                       if name != "omniglot_5way1shot_budget_lstm"]
EVAL_TASKS, EVAL_QUERIES = 2, 3


def test_the_budget_table_has_every_algorithm():
  algorithms = {main.load_experiment(name).algorithm.NAME
                for name in BUDGET_EXPERIMENTS}
  assert algorithms == {"maml", "fomaml", "reptile", "metasgd", "anil",
                        "boil", "mamlpp", "imaml", "protonet", "matching",
                        "cnp", "snail"}
  stepped = {main.load_experiment(name).algorithm.NAME
             for name in STEPPED_EXPERIMENTS}
  assert stepped == algorithms


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
@pytest.mark.parametrize("name", STEPPED_EXPERIMENTS)
def test_budget_config_steps_and_evaluates_on_real_omniglot(name):
  config = override(main.load_experiment(name), {
      "task.data_dir": DATA_DIR, "model.width": 16,
      "outer.meta_batch_size": 2, "eval.num_tasks": EVAL_TASKS,
      "task.eval_queries": EVAL_QUERIES})
  run = train.build_run(config)
  before = jax.tree.map(np.array, run.state.params)  # the step donates it
  state, _, metrics = run.call(run.state, run.first_tasks(run.state))
  assert int(state.step) == 1 and int(state.nonfinite_count) == 0
  assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
  assert float(metrics["grad_norm"]) > 0
  assert bool(tree_is_finite(state.params))
  moved = jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
      before, state.params))
  assert any(moved)

  results = train.evaluate(run, state.params)
  setting = f"{config.task.ways}-way {config.task.shots}-shot test"
  assert list(results) == [setting]
  curves = results[setting]
  assert set(curves) == {"loss", "accuracy"}
  # Scored before adaptation and after each configured number of inner
  # steps; algorithms with no inner loop (their own evaluation), only step 0.
  steps = (0,) if run.algorithm.evaluate is not None else (
      (0,) + tuple(config.eval.inner_steps))
  for curve in curves.values():
    assert list(curve) == [f"step_{n}" for n in steps]
    for summary in curve.values():
      assert summary["num_nonfinite"] == 0
      assert np.isfinite(summary["mean"]) and np.isfinite(summary["ci95"])
  # The mean over the tasks of each task's fraction of its queries scored
  # right: a whole number of right answers out of ways x queries x tasks.
  answers = config.task.ways * EVAL_QUERIES * EVAL_TASKS
  for summary in curves["accuracy"].values():
    correct = summary["mean"] * answers
    assert 0 <= round(correct) <= answers
    np.testing.assert_allclose(correct, round(correct), atol=1e-4)
