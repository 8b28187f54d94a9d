"""Each algorithm's Omniglot budget config steps and evaluates on real tasks."""
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


def test_the_budget_table_has_every_algorithm():
  algorithms = {main.load_experiment(name).algorithm.NAME
                for name in BUDGET_EXPERIMENTS}
  assert algorithms == {"maml", "fomaml", "reptile", "metasgd", "anil",
                        "boil", "mamlpp", "imaml", "protonet"}


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
@pytest.mark.parametrize("name", BUDGET_EXPERIMENTS)
def test_budget_config_steps_and_evaluates_on_real_omniglot(name):
  config = override(main.load_experiment(name), {
      "task.data_dir": DATA_DIR, "outer.meta_batch_size": 2,
      "outer.num_meta_steps": 2, "eval.num_tasks": 3,
      "task.eval_queries": 2})
  run = train.build_run(config)
  before = jax.tree.map(np.array, run.state.params)  # the step donates it
  tasks = run.first_tasks(run.state)
  state, tasks, metrics = run.call(run.state, tasks)
  state, tasks, metrics = run.call(state, tasks)
  assert int(state.step) == 2 and int(state.nonfinite_count) == 0
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert bool(tree_is_finite(state.params))
  moved = jax.tree.leaves(jax.tree.map(
      lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
      before, state.params))
  assert any(moved)
  results = train.evaluate(run, state.params)
  (curves,) = results.values()
  for summary in curves["accuracy"].values():
    assert 0.0 <= summary["mean"] <= 1.0
