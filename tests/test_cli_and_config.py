"""Bad input fails early with a message naming the field; the CLI runs end to end."""
import dataclasses
import json
import os

import pytest

from experiments import sine
from metajax.training import cli as main
from metajax.training import trainer as train
from metajax.training.config import ConfigError, override


@pytest.mark.parametrize("overrides,field", [
    ({"inner_steps": "0"}, "inner_steps"),
    ({"inner_steps": "-2"}, "inner_steps"),
    ({"inner_lr": "0"}, "inner_lr"),
    ({"outer_lr": "-1e-3"}, "outer_lr"),
    ({"meta_batch_size": "0"}, "meta_batch_size"),
    ({"inner_lr": "fast"}, "inner_lr"),
    ({"num_meta_steps": "1e3x"}, "num_meta_steps"),
    ({"first_order": "maybe"}, "first_order"),
    ({"task": "cifar"}, "task"),
    ({"amplitude_range": "5,0.1"}, "amplitude_range"),
    ({"inner_stpes": "3"}, "inner_stpes"),
])
def test_bad_overrides_raise_config_error_naming_the_field(overrides, field):
  with pytest.raises(ConfigError, match=field):
    override(sine.get_config(), overrides)


def test_unknown_field_suggests_the_close_name():
  with pytest.raises(ConfigError, match="did you mean inner_steps"):
    override(sine.get_config(), {"inner_stpes": "3"})


def test_unknown_algorithm_fails_before_compiling():
  config = dataclasses.replace(sine.get_config(), algorithm="maml2")
  with pytest.raises(ConfigError, match="algorithm"):
    train.check_config(config)


def test_overrides_are_parsed_by_type():
  config = override(sine.get_config(), {
      "inner_steps": "3", "inner_lr": "0.5", "first_order": "true",
      "hidden_sizes": "16,16,16", "x_range": "-1,1"})
  assert config.inner_steps == 3 and config.inner_lr == 0.5
  assert config.first_order is True
  assert config.hidden_sizes == (16, 16, 16) and config.x_range == (-1.0, 1.0)


def test_cli_errors_exit_2_with_message(capsys):
  assert main.main(["no_such_experiment"]) == 2
  assert "unknown experiment 'no_such_experiment'" in capsys.readouterr().err
  assert main.main(["sine", "--inner_lr=abc"]) == 2
  assert "'inner_lr': expected a number" in capsys.readouterr().err


def test_cli_help_lists_experiments_and_fields(capsys):
  assert main.main(["sine", "--help"]) == 0
  out = capsys.readouterr().out
  assert "sine_pretrained" in out and "--inner_lr=0.01" in out


def test_cli_run_writes_the_run_directory(tmp_path, capsys):
  run_dir = tmp_path / "run"
  code = main.main([
      "sine", "--num_meta_steps=40", "--steps_per_call=10", "--log_every=20",
      "--hidden_sizes=8", "--eval_num_tasks=10", "--eval_num_query=5",
      f"--run_dir={run_dir}", "--no_progress"])
  assert code == 0
  for name in ("config.json", "metrics.jsonl", "results.json",
               "params.msgpack", "learning_curve.png", "adaptation.png"):
    assert (run_dir / name).exists(), name
  records = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
  assert [r["step"] for r in records] == [20, 40]
  results = json.load(open(run_dir / "results.json"))
  assert set(results["evaluation"]) == {"K=5", "K=10"}
  assert json.load(open(run_dir / "config.json"))["num_meta_steps"] == 40
  # The saved model can be evaluated again on its own.
  assert main.main(["sine", "--hidden_sizes=8", "--eval_num_tasks=10",
                    "--eval_num_query=5", f"--run_dir={run_dir}",
                    "--eval_only"]) == 0
  again = json.load(open(run_dir / "eval_results.json"))
  assert again["evaluation"] == results["evaluation"]


def test_nonfinite_loss_stops_with_the_step_and_keeps_files(tmp_path, capsys):
  run_dir = tmp_path / "run"
  code = main.main([
      "sine", "--num_meta_steps=40", "--log_every=10", "--steps_per_call=10",
      "--hidden_sizes=8", "--inner_lr=1e30",
      f"--run_dir={run_dir}", "--no_progress"])
  err = capsys.readouterr().err
  assert code == 1
  assert "non-finite loss or gradient at meta-step" in err
  assert os.path.exists(run_dir / "params.msgpack")
  records = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
  assert records  # everything logged so far stays readable
