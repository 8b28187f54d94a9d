"""Every experiment config is valid; the seed's examples behave as documented."""
import pytest

from algorithm_problems import take_steps
from conftest import data_dir_or_none
from test_text_data import text_data_dir_or_none
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.training.config import override, validate

DATA_DIR = data_dir_or_none()
TEXT_DATA_DIR = text_data_dir_or_none()


@pytest.mark.parametrize("name", main.list_experiments())
def test_every_experiment_config_validates(name):
  config = validate(main.load_experiment(name))
  if config.task.NAME == "omniglot":
    if DATA_DIR is None:
      pytest.skip("no Omniglot data: the task and the algorithm's checks "
                  "need it")
    config = override(config, {"task.data_dir": DATA_DIR})
  if config.task.NAME in ("huffpost", "clinc150"):
    if TEXT_DATA_DIR is None:
      pytest.skip("no text data (<data_dir>/text/): the task's shapes and "
                  "the word models' vectors need it")
    config = override(config, {"task.data_dir": TEXT_DATA_DIR})
  if config.task.NAME in ("cheetah_vel", "cheetah_dir"):
    pytest.importorskip("brax", reason="the half-cheetah tasks need brax "
                        '(pip install -e ".[rl]")')
  # Every field, the task's shapes and the algorithm's own checks.
  train.build_problem(config)


def _train_seed(tmp_path, name, steps):
  config = override(main.load_experiment(name),
                    {"outer.num_meta_steps": steps, "eval.num_tasks": 100})
  return train.train(config, str(tmp_path / name), experiment=name,
                     progress=False)


def test_seed_degenerate_setting_has_nothing_to_meta_learn(tmp_path):
  # Every task is y = 2x + 3: there is no task variation, so the learned
  # initialisation itself almost fits every task (a single line), and
  # adaptation reaches the noise floor 0.1^2 = 0.01 and nothing below it.
  results = _train_seed(tmp_path, "seed_degenerate", 2000)
  curve = results["evaluation"]["K=10"]
  before, after = curve["step_0"]["mean"], curve["step_5"]["mean"]
  assert before < 0.05
  assert 0.008 < after < 0.015


def test_seed_linear_distribution_is_meta_learned():
  config = override(main.load_experiment("seed_linear"),
                    {"outer.num_meta_steps": 1000, "eval.num_tasks": 100})
  run = train.build_run(config)
  untrained = train.evaluate(run, run.state.params)["K=10"]
  state, _ = take_steps(run, 1000 // config.outer.steps_per_call)
  assert int(state.step) == 1000 and int(state.nonfinite_count) == 0
  curve = train.evaluate(run, state.params)["K=10"]
  assert curve["step_0"]["mean"] > 1.0     # one init cannot fit every line
  assert curve["step_5"]["mean"] < 0.1 * curve["step_0"]["mean"]  # 5 steps can
  # Both hold for the untrained initialisation too; what meta-training adds
  # is a start from which 5 steps fit the same 100 tasks better (0.14 vs
  # 0.17 when written).
  assert curve["step_5"]["mean"] < 0.9 * untrained["step_5"]["mean"], (
      curve, untrained)
