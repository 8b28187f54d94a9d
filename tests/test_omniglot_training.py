"""A few MAML meta-steps on real Omniglot tasks lower the held-out loss; bad
task shapes fail before training."""
import re

import jax
import jax.numpy as jnp
import optax
import pytest

import metajax as mj
from conftest import data_dir_or_none
from experiments import omniglot_5way1shot
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override
from metajax.tasks.omniglot import load_omniglot, make_split, make_task_sampler, sample_tasks
from metajax.models.conv4 import Conv4

DATA_DIR = data_dir_or_none()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")


@pytest.fixture(scope="module")
def splits():
  # The default cache, which the trainer's tests fill too: preprocessing the
  # zips again into a fresh cache costs seconds and proves nothing here
  # (tests/test_omniglot_data.py tests the cache).
  return make_split(load_omniglot(DATA_DIR), "maml")


@needs_data
def test_meta_steps_on_real_tasks_lower_the_loss(splits):
  model = Conv4(num_classes=5, width=16, strided=True)
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  inner = mj.InnerLoop(loss_fn=mj.cross_entropy_loss(model.apply),
                       num_steps=1, learning_rate=0.4,
                       metric_fn=mj.accuracy_metric(model.apply))
  held_out = sample_tasks(splits.val, jax.random.key(5), num_tasks=16, ways=5,
                          shots=1, queries=5)
  # One compiled program scores the held-out tasks before and after.
  held_out_loss = jax.jit(
      lambda p: mj.meta_objective(p, held_out, inner)[0])
  before = float(held_out_loss(params))
  optimizer = optax.adam(3e-3)
  state = mj.init_meta_state(params, optimizer, jax.random.key(1))
  step = mj.make_meta_step(
      mj.maml_meta_grad(inner), optimizer,
      task_sampler=make_task_sampler(splits.train, ways=5, shots=1, queries=5,
                                     num_tasks=8))
  for _ in range(40):
    state, metrics = step(state)
  after = float(held_out_loss(state.params))
  assert int(state.step) == 40 and int(state.nonfinite_count) == 0
  assert bool(mj.tree_is_finite(state.params))
  assert after < 0.8 * before


@needs_data
@pytest.mark.parametrize("changes,field", [
    ({"task.ways": 5000}, "task.ways=5000"),
    ({"task.shots": 10, "task.queries": 15}, "task.shots=10"),
    ({"task.eval_queries": 25}, "task.eval_queries=25"),
    ({"model": "mlp"}, "'model'"),
])
def test_impossible_tasks_fail_before_training(changes, field):
  config = override(omniglot_5way1shot.get_config(),
                    {"task.data_dir": DATA_DIR, **changes})
  with pytest.raises(ConfigError, match=re.escape(field)):
    train.build_run(config)


@needs_data
def test_saved_gpu_model_reproduces_its_reported_accuracy(tmp_path):
  """The README's H200 5-way 1-shot model, re-evaluated here on fewer tasks."""
  import json, os, shutil  # pylint: disable=g-import-not-at-top,multiple-imports
  from conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top
  from metajax.training.config import from_dict  # pylint: disable=g-import-not-at-top
  saved = os.path.join(REPO_ROOT, "experiments", "results", "nvidia-h200",
                       "omniglot_5way1shot")
  run_dir = shutil.copytree(saved, tmp_path / "run")
  with open(os.path.join(saved, "config.json")) as f:
    values = {k: v for k, v in json.load(f).items() if k != "experiment"}
  config = override(from_dict(values), {"task.data_dir": DATA_DIR,
                                        "eval.num_tasks": 100})
  results = train.evaluate_saved(config, str(run_dir))
  with open(run_dir / "eval_results.json") as f:
    assert json.load(f) == json.loads(json.dumps(results))
  accuracy = results["evaluation"]["5-way 1-shot test"]["accuracy"]
  with open(os.path.join(saved, "results.json")) as f:
    reported = json.load(f)["evaluation"]["5-way 1-shot test"]["accuracy"]
  # The README's row quotes this run's report, which the model reproduces.
  row = next(line for line in (REPO_ROOT / "README.md").read_text().split("\n")
             if "(experiments/results/nvidia-h200/omniglot_5way1shot/)" in line)
  assert (f"**{100 * reported['step_3']['mean']:.1f} +- "
          f"{100 * reported['step_3']['ci95']:.1f} %**") in row, row
  assert reported["step_3"]["mean"] > 0.975
  assert accuracy["step_3"]["mean"] > 0.96  # 100 tasks instead of 600
  # The CPU's re-evaluation agrees with the H200's report: before adapting,
  # chance (1 in 5); after one and three steps, their 95% intervals overlap.
  for step in ("step_0", "step_1", "step_3"):
    ours, theirs = accuracy[step], reported[step]
    gap = abs(ours["mean"] - theirs["mean"])
    assert gap <= ours["ci95"] + theirs["ci95"], (step, ours, theirs)
  assert abs(accuracy["step_0"]["mean"] - 0.2) <= accuracy["step_0"]["ci95"]
