"""Command line: `python -m metajax EXPERIMENT [--field=value ...]`.

EXPERIMENT names a module `experiments/<name>.py` (or is a path to such a
file) whose `get_config()` returns a `metajax.training.config.Config`. Every config
field can be overridden as `--field=value`; `--help` lists them.
"""
import importlib
import importlib.util
import os
import pkgutil
import sys
import time

from metajax.training.config import (
    ConfigError, config_from_dict, describe_fields, override)
from metajax.training.run_io import read_json

USAGE = """usage: python -m metajax EXPERIMENT [--field=value ...] [--eval_only]
                          [--no_progress] [--help]
       python -m metajax --resume --run_dir=DIR [--field=value ...]

Trains EXPERIMENT's config, evaluates it and writes config.json,
metrics.jsonl, results.json, params.msgpack and plots into --run_dir
(default runs/<experiment>-<time>).
  --eval_only    re-evaluate the params saved in --run_dir, no training
  --resume       continue the run in --run_dir from its newest checkpoint,
                 with its saved config (overrides such as a larger
                 --num_meta_steps apply on top)
  --no_progress  no progress bar
"""


def list_experiments() -> list:
  import experiments  # pylint: disable=g-import-not-at-top
  return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                if not m.name.startswith("_"))


def load_experiment(name: str):
  """The `get_config()` result of experiment `name` (module name or path)."""
  if name.endswith(".py"):
    if not os.path.exists(name):
      raise ConfigError(f"experiment file {name!r} does not exist")
    spec = importlib.util.spec_from_file_location("experiment_config", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    if name not in list_experiments():
      raise ConfigError(f"unknown experiment {name!r}; expected one of "
                        f"{list_experiments()} or a path to a .py config")
    module = importlib.import_module(f"experiments.{name}")
  return module.get_config()


def parse_args(argv: list):
  """Splits argv into (experiment, overrides, flags); ConfigError if bad."""
  experiment, overrides, flags = None, {}, set()
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg in ("--eval_only", "--no_progress", "--help", "-h", "--resume"):
      flags.add(arg.lstrip("-").replace("h", "help") if arg == "-h" else
                arg.lstrip("-"))
    elif arg.startswith("--"):
      name, eq, value = arg[2:].partition("=")
      if not eq:
        if i + 1 >= len(argv):
          raise ConfigError(f"option --{name} needs a value (--{name}=VALUE)")
        i, value = i + 1, argv[i + 1]
      overrides[name.replace("-", "_")] = value
    elif experiment is None:
      experiment = arg
    else:
      raise ConfigError(f"unexpected argument {arg!r}; overrides look like "
                        "--field=value")
    i += 1
  return experiment, overrides, flags


def _resumed_config(experiment, overrides):
  """(experiment, config) of the run in --run_dir, overrides applied."""
  run_dir = overrides.get("run_dir")
  if not run_dir:
    raise ConfigError("--resume needs --run_dir=DIR, the run to continue")
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"--resume: no run to continue in {run_dir!r} (missing "
                      f"{path})")
  saved = read_json(path)
  saved_experiment = saved.pop("experiment", "") or "resumed"
  if experiment and os.path.splitext(os.path.basename(experiment))[0] != saved_experiment:
    raise ConfigError(f"--resume: {run_dir!r} holds a run of experiment "
                      f"{saved_experiment!r}, not {experiment!r}")
  return saved_experiment, override(config_from_dict(saved), overrides)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  from metajax.parallel import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_from_env()  # no-op unless METAJAX_* variables say so
  try:
    experiment, overrides, flags = parse_args(argv)
    if "resume" in flags:
      experiment, config = _resumed_config(experiment, overrides)
    elif "help" in flags or experiment is None:
      config = load_experiment(experiment) if experiment else None
      print(USAGE + "\nexperiments: " + ", ".join(list_experiments()))
      print("\nconfig fields" + (f" of {experiment}" if experiment else "")
            + ":\n" + describe_fields(config))
      return 0 if "help" in flags else 2
    else:
      config = override(load_experiment(experiment), overrides)
    from metajax.training import trainer as train  # pylint: disable=g-import-not-at-top
    train.check_config(config)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  name = os.path.splitext(os.path.basename(experiment))[0]
  run_dir = config.run_dir or os.path.join(
      "runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
  if "eval_only" in flags:
    results = train.evaluate_saved(config, run_dir)
  else:
    try:
      results = train.train(config, run_dir, experiment=name,
                            progress="no_progress" not in flags,
                            resume="resume" in flags)
    except train.NonFiniteError as e:
      print(f"error: {e}; run directory: {run_dir}", file=sys.stderr)
      return 1
    except (FileExistsError, FileNotFoundError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  print(train.format_results(results))
  print(f"run directory: {run_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
