"""Bad input fails early with a message naming the field; the CLI runs end to
end; configs round-trip through their JSON form."""
import dataclasses
import json
import os
import re

import jax
import pytest

from conftest import data_dir_or_none
from experiments import sine
from metajax.settings import Section
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.training.config import (
    SCHEMA_VERSION, ConfigError, from_dict, override, to_dict)

DATA_DIR = data_dir_or_none()


@pytest.mark.parametrize("overrides,field", [
    ({"inner.steps": "0"}, "inner.steps"),
    ({"inner.steps": "-2"}, "inner.steps"),
    ({"inner.lr": "0"}, "inner.lr"),
    ({"outer.lr": "-1e-3"}, "outer.lr"),
    ({"outer.meta_batch_size": "0"}, "outer.meta_batch_size"),
    ({"inner.lr": "fast"}, "inner.lr"),
    ({"outer.num_meta_steps": "1e3x"}, "outer.num_meta_steps"),
    ({"inner.first_order": "maybe"}, "inner.first_order"),
    ({"task": "cifar"}, "task"),
    ({"task.amplitude_range": "5,0.1"}, "task.amplitude_range"),
    ({"inner.stpes": "3"}, "inner.stpes"),
])
def test_bad_overrides_raise_config_error_naming_the_field(overrides, field):
  with pytest.raises(ConfigError, match=f"'{re.escape(field)}'"):
    override(sine.get_config(), overrides)


def test_unknown_field_suggests_the_close_name():
  with pytest.raises(ConfigError, match=r"did you mean inner\.steps"):
    override(sine.get_config(), {"inner.stpes": "3"})


def test_old_flat_field_names_its_new_place():
  with pytest.raises(ConfigError, match=r"'inner_steps': it is now "
                     r"'inner\.steps'"):
    override(sine.get_config(), {"inner_steps": "3"})


@dataclasses.dataclass(frozen=True)
class _Maml2Config(Section):
  NAME = "maml2"


def test_unknown_algorithm_fails_before_compiling():
  with pytest.raises(ConfigError, match="algorithm 'maml2'"):
    override(sine.get_config(), {"algorithm": "maml2"})
  config = dataclasses.replace(sine.get_config(), algorithm=_Maml2Config())
  with pytest.raises(ConfigError, match="algorithm 'maml2'"):
    train.build_problem(config)


def test_overrides_are_parsed_by_type():
  config = override(sine.get_config(), {
      "inner.steps": "3", "inner.lr": "0.5", "inner.first_order": "true",
      "model.hidden_sizes": "16,16,16", "task.x_range": "-1,1"})
  assert config.inner.steps == 3 and config.inner.lr == 0.5
  assert config.inner.first_order is True
  assert config.model.hidden_sizes == (16, 16, 16)
  assert config.task.x_range == (-1.0, 1.0)


def test_cli_errors_exit_2_with_message(capsys):
  assert main.main(["no_such_experiment"]) == 2
  assert "unknown experiment 'no_such_experiment'" in capsys.readouterr().err
  assert main.main(["sine", "--inner.lr=abc"]) == 2
  assert "'inner.lr': expected a number" in capsys.readouterr().err


def test_cli_help_lists_experiments_and_fields(capsys):
  assert main.main(["sine", "--help"]) == 0
  out = capsys.readouterr().out
  assert "sine_pretrained" in out and "--inner.lr=0.01" in out


def test_cli_run_writes_the_run_directory(tmp_path, capsys):
  run_dir = tmp_path / "run"
  code = main.main([
      "sine", "--outer.num_meta_steps=40", "--outer.steps_per_call=10",
      "--run.log_every=20", "--model.hidden_sizes=8", "--eval.num_tasks=10",
      "--task.eval_query_points=5", f"--run_dir={run_dir}", "--no_progress"])
  assert code == 0
  for name in ("config.json", "metrics.jsonl", "results.json",
               "params.msgpack", "learning_curve.png", "adaptation.png"):
    assert (run_dir / name).exists(), name
  records = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
  assert [r["step"] for r in records] == [20, 40]
  results = json.load(open(run_dir / "results.json"))
  assert set(results["evaluation"]) == {"K=5", "K=10"}
  saved = json.load(open(run_dir / "config.json"))
  assert saved["schema_version"] == SCHEMA_VERSION == 2
  assert saved["outer"]["num_meta_steps"] == 40
  # The saved model can be evaluated again on its own.
  assert main.main(["sine", "--model.hidden_sizes=8", "--eval.num_tasks=10",
                    "--task.eval_query_points=5", f"--run_dir={run_dir}",
                    "--eval_only"]) == 0
  again = json.load(open(run_dir / "eval_results.json"))
  assert again["evaluation"] == results["evaluation"]


def test_nonfinite_loss_stops_with_the_step_and_keeps_files(tmp_path, capsys):
  run_dir = tmp_path / "run"
  code = main.main([
      "sine", "--outer.num_meta_steps=40", "--run.log_every=10",
      "--outer.steps_per_call=10", "--model.hidden_sizes=8",
      "--inner.lr=1e30", f"--run_dir={run_dir}", "--no_progress"])
  err = capsys.readouterr().err
  assert code == 1
  assert "non-finite loss or gradient at meta-step" in err
  assert os.path.exists(run_dir / "params.msgpack")
  records = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
  assert records  # everything logged so far stays readable


# ------------------------------------------------ config JSON (schema 2)
@pytest.mark.parametrize("name", main.list_experiments())
def test_every_experiment_round_trips_through_its_json_form(name):
  config = main.load_experiment(name)
  values = to_dict(config)
  assert values["schema_version"] == 2
  assert from_dict(values) == config
  # As written to and read back from config.json (tuples become lists).
  assert from_dict(json.loads(json.dumps(values))) == config


def test_to_dict_is_nested_sections_with_names():
  values = to_dict(sine.get_config())
  assert values["schema_version"] == 2
  assert values["task"]["name"] == "sine"
  assert values["algorithm"] == {"name": "maml"}
  assert values["inner"]["steps"] == 1 and "name" not in values["inner"]


# --------------------------------------------- one-line command-line errors
def _one_error_line(capsys) -> str:
  """The whole of stderr, which must be one `error: ...` line."""
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: "), lines
  return lines[0]


def test_flat_field_on_the_command_line_names_its_new_place(tmp_path,
                                                            capsys):
  assert main.main(["sine", "--inner_steps=5", f"--run_dir={tmp_path / 'r'}",
                    "--no_progress"]) == 2
  line = _one_error_line(capsys)
  assert "'inner_steps'" in line and "'inner.steps'" in line
  assert not (tmp_path / "r").exists()


@pytest.mark.skipif(jax.device_count() >= 3, reason="needs < 3 devices")
def test_too_many_devices_is_a_one_line_error(tmp_path, capsys):
  assert main.main(["sine", "--run.num_devices=3", "--model.hidden_sizes=8",
                    f"--run_dir={tmp_path / 'r'}", "--no_progress"]) == 2
  assert "run.num_devices" in _one_error_line(capsys)


@pytest.mark.skipif(DATA_DIR is None, reason="no Omniglot data")
def test_impossible_omniglot_task_is_a_one_line_error(tmp_path, capsys):
  assert main.main(["omniglot_5way1shot", "--task.ways=3000",
                    f"--task.data_dir={DATA_DIR}",
                    f"--run_dir={tmp_path / 'r'}", "--no_progress"]) == 2
  line = _one_error_line(capsys)
  assert "ways" in line and "3000" in line


def test_bad_value_on_the_command_line_names_the_field(tmp_path, capsys):
  assert main.main(["sine", "--inner.lr=-1", f"--run_dir={tmp_path / 'r'}",
                    "--no_progress"]) == 2
  line = _one_error_line(capsys)
  assert "'inner.lr'" in line and "-1" in line


# ------------------------------------------------ per-experiment --help
def test_help_lists_only_the_experiments_own_algorithm_fields(capsys):
  assert main.main(["sine", "--help"]) == 0
  out = capsys.readouterr().out
  assert "--inner.steps=" in out
  assert "algorithm = maml" in out
  assert "algorithm.lam" not in out and "algorithm.cg_steps" not in out
  assert "algorithm.serial" not in out
  assert main.main(["sine_imaml", "--help"]) == 0
  out = capsys.readouterr().out
  assert "algorithm = imaml" in out
  assert "--algorithm.lam=" in out and "--algorithm.cg_steps=" in out
  assert "algorithm.serial" not in out


@pytest.mark.parametrize("order", [0, 1])
def test_algorithm_switch_and_its_field_on_the_command_line(order):
  args = ["--algorithm=imaml", "--algorithm.lam=2"]
  experiment, overrides, options = main.parse_args(
      ["sine"] + (args if order == 0 else args[::-1]))
  assert experiment == "sine" and not options
  config = override(main.load_experiment(experiment), overrides)
  assert config.algorithm.NAME == "imaml"
  assert config.algorithm.lam == 2.0
  assert config.algorithm.cg_steps == 5  # the rest: imaml's defaults
  assert config.inner == sine.get_config().inner
