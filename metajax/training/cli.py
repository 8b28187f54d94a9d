"""Command line: `python -m metajax EXPERIMENT [--section.field=value ...]`.

EXPERIMENT names a file `experiments/<name>.py` of this repository (or of
`$METAJAX_EXPERIMENTS_DIR`, or `./experiments`), or is the path of such a
file, whose `get_config()` returns a `metajax.training.config.Config`.
Every config field can be overridden as `--section.field=value`, and the
task, model and algorithm chosen as `--task=NAME`; `--help` lists them.
"""
import importlib.util
import os
import pathlib
import shutil
import sys
import time

from metajax.settings import ConfigError
from metajax.training.config import Config, describe, from_dict, override
from metajax.training.run_io import read_json

USAGE = """usage: python -m metajax EXPERIMENT [--section.field=value ...]
                          [--section=NAME] [--run_dir=DIR] [--eval_only]
                          [--no_progress] [--help]
       python -m metajax --resume --run_dir=DIR [--section.field=value ...]

Trains EXPERIMENT's config, evaluates it and writes config.json,
metrics.jsonl, results.json, params.msgpack and plots into --run_dir
(default runs/<experiment>-<time>).
  --run_dir=DIR  the run directory
  --eval_only    re-evaluate the params saved in --run_dir, no training
  --resume       continue the run in --run_dir from its newest checkpoint,
                 with its saved config (overrides such as a larger
                 --outer.num_meta_steps apply on top)
  --no_progress  no progress bar
"""
FLAGS = ("eval_only", "no_progress", "help", "resume")


def experiment_dirs() -> list:
  """Where experiment names are looked up, in order."""
  dirs = []
  if os.environ.get("METAJAX_EXPERIMENTS_DIR"):
    dirs.append(pathlib.Path(os.environ["METAJAX_EXPERIMENTS_DIR"]))
  dirs.append(pathlib.Path.cwd() / "experiments")
  # A source checkout (or editable install): the repository's experiments.
  dirs.append(pathlib.Path(__file__).resolve().parents[2] / "experiments")
  unique = []
  for directory in dirs:
    if directory.is_dir() and directory.resolve() not in unique:
      unique.append(directory.resolve())
  return unique


def list_experiments() -> list:
  names = set()
  for directory in experiment_dirs():
    names.update(p.stem for p in directory.glob("*.py")
                 if not p.stem.startswith("_"))
  return sorted(names)


def find_experiment(name: str) -> pathlib.Path:
  """The file of experiment `name` (a name or a path to a .py file)."""
  if name.endswith(".py"):
    path = pathlib.Path(name)
    if not path.is_file():
      raise ConfigError(f"experiment file {name!r} does not exist")
    return path.resolve()
  for directory in experiment_dirs():
    if (directory / f"{name}.py").is_file():
      return directory / f"{name}.py"
  raise ConfigError(f"unknown experiment {name!r}; expected one of "
                    f"{list_experiments()} or a path to a .py config")


def load_experiment(name: str) -> Config:
  """The `get_config()` result of experiment `name` (name or path).

  The experiment's folder's parent is put on `sys.path` while it loads, so
  a variant can import its base (`from experiments import sine`).
  """
  path = find_experiment(name)
  root = str(path.parent.parent)
  added = root not in sys.path
  if added:
    sys.path.insert(0, root)
  try:
    package = path.parent.name
    module_name = (f"{package}.{path.stem}"
                   if (path.parent / "__init__.py").exists() else path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(module_name, module)
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
      raise ConfigError(f"experiment {name!r} ({path}) defines no "
                        "get_config(); an experiment file returns its "
                        "Config from get_config()")
    config = get_config()
  finally:
    if added:
      sys.path.remove(root)
  if not isinstance(config, Config):
    raise ConfigError(f"experiment {name!r}: get_config() must return a "
                      f"metajax Config, got {type(config).__name__}")
  return config


def parse_args(argv: list):
  """Splits argv into (experiment, overrides, options); ConfigError if bad.

  `options` holds the flags present (`"resume"`, ...) and `run_dir`.
  """
  experiment, overrides, options = None, {}, {}
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "-h" or (arg.startswith("--") and arg[2:] in FLAGS):
      options["help" if arg == "-h" else arg[2:]] = True
    elif arg.startswith("--"):
      name, eq, value = arg[2:].partition("=")
      if not eq:
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
          raise ConfigError(f"option --{name} needs a value (--{name}=VALUE)")
        i, value = i + 1, argv[i + 1]
      name = name.replace("-", "_")
      if name == "run_dir":
        options["run_dir"] = value
      else:
        overrides[name] = value
    elif experiment is None:
      experiment = arg
    else:
      raise ConfigError(f"unexpected argument {arg!r}; overrides look like "
                        "--section.field=value")
    i += 1
  return experiment, overrides, options


def saved_config(run_dir: str) -> tuple:
  """`(experiment, config)` saved in `run_dir/config.json` (any schema)."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"no run in {run_dir!r} (missing {path})")
  saved = read_json(path)
  experiment = saved.pop("experiment", "") or "resumed"
  if "schema_version" not in saved:  # keep the flat original beside it
    backup = os.path.join(run_dir, "config.schema1.json")
    if not os.path.exists(backup):
      shutil.copyfile(path, backup)
  return experiment, from_dict(saved)


def _saved_run_config(flag, experiment, overrides, run_dir):
  """(experiment, config) of the run in --run_dir, overrides applied, for
  `flag` ("--resume" or "--eval_only"); ConfigError if EXPERIMENT is named
  and is not the saved run's."""
  if not run_dir:
    raise ConfigError(f"{flag} needs --run_dir=DIR, the saved run")
  saved_experiment, config = saved_config(run_dir)
  if experiment and pathlib.Path(experiment).stem != saved_experiment:
    raise ConfigError(f"{flag}: {run_dir!r} holds a run of experiment "
                      f"{saved_experiment!r}, not {experiment!r}")
  return saved_experiment, override(config, overrides)


def _print_help(experiment, overrides):
  config = override(load_experiment(experiment) if experiment else Config(),
                    overrides)
  print(USAGE + "\nexperiments: " + ", ".join(list_experiments()))
  print("\nconfig" + (f" of {experiment}" if experiment else " defaults")
        + ":\n" + describe(config))


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  from metajax.parallel import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize_from_env()  # no-op unless METAJAX_* variables say so
  from metajax.training import trainer  # pylint: disable=g-import-not-at-top
  try:
    experiment, overrides, options = parse_args(argv)
    run_dir = options.get("run_dir", "")
    saved_run = options.get("resume") or (
        options.get("eval_only") and run_dir
        and os.path.exists(os.path.join(run_dir, "config.json")))
    if options.get("help"):
      _print_help(experiment, overrides)
      return 0
    if experiment is None and not saved_run:
      _print_help(None, overrides)
      raise ConfigError("no EXPERIMENT given (or --resume/--eval_only with "
                        "--run_dir=DIR of a saved run)")
    if saved_run:
      flag = "--resume" if options.get("resume") else "--eval_only"
      experiment, config = _saved_run_config(flag, experiment, overrides,
                                             run_dir)
    else:
      config = override(load_experiment(experiment), overrides)
    name = pathlib.Path(experiment).stem
    run_dir = run_dir or os.path.join(
        "runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if options.get("eval_only"):
      results = trainer.evaluate_saved(config, run_dir)
    else:
      results = trainer.train(config, run_dir, experiment=name,
                              progress=not options.get("no_progress"),
                              resume=bool(options.get("resume")))
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except trainer.NonFiniteError as e:
    print(f"error: {e}; run directory: {run_dir}", file=sys.stderr)
    return 1
  except (FileExistsError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(trainer.format_results(results))
  print(f"run directory: {run_dir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
