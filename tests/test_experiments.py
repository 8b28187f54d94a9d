"""Every experiment config is valid; the seed's examples behave as documented."""
import dataclasses

import pytest

from metajax.training import cli as main
from metajax.training import trainer as train


@pytest.mark.parametrize("name", main.list_experiments())
def test_every_experiment_config_validates(name):
  train.check_config(main.load_experiment(name))


def _train_seed(tmp_path, name, steps):
  config = dataclasses.replace(main.load_experiment(name),
                               num_meta_steps=steps, eval_num_tasks=100)
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


def test_seed_linear_distribution_is_meta_learned(tmp_path):
  results = _train_seed(tmp_path, "seed_linear", 1000)
  curve = results["evaluation"]["K=10"]
  assert curve["step_0"]["mean"] > 1.0     # one init cannot fit every line
  assert curve["step_5"]["mean"] < 0.1 * curve["step_0"]["mean"]  # 5 steps can
