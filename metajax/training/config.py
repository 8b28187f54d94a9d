"""Experiment configuration: one frozen dataclass, overridable from the CLI.

An experiment is a Python file under `experiments/` with `get_config()`
returning a `Config`; variants import a base and `dataclasses.replace` a few
fields. Command-line overrides are `--field=value`, parsed by the field's
type and validated before anything is compiled.
"""
import dataclasses
import difflib
import math
import typing
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run. Field comments say what each one means."""
  # What to learn.
  task: str = "sine"                 # sine | linear | omniglot
  algorithm: str = "maml"            # maml | fomaml | pretrain | ... (metajax/algorithms)
  seed: int = 0
  # Tasks. K support and query points (regression) or shots/queries per class.
  meta_batch_size: int = 25
  num_support: int = 10
  num_query: int = 10
  amplitude_range: tuple = (0.1, 5.0)   # sine
  phase_range: tuple = (0.0, math.pi)   # sine
  x_range: tuple = (-5.0, 5.0)          # sine and linear
  slope_range: tuple = (-3.0, 3.0)      # linear
  intercept_range: tuple = (-3.0, 3.0)  # linear
  noise_std: float = 0.0                # linear
  # Model.
  model: str = "mlp"                 # mlp | conv4 | conv4_strided
  hidden_sizes: tuple = (40, 40)
  activation: str = "relu"
  init_stddev: float = 0.0           # >0: truncated-normal weights (MAML code: 0.01)
  conv: str = "auto"                 # conv4: auto (fast on CPU, im2col elsewhere) | fast | im2col | reference
  dense: str = "auto"                # mlp: auto (fast on CPU unless the algorithm needs jax.jvp) | fast | plain
  # Inner loop.
  inner_steps: int = 1
  inner_lr: float = 0.01
  inner_optimizer: str = "sgd"       # sgd | adam
  first_order: bool = False
  remat: bool = False
  pre_metrics: bool = True           # also log query metrics before adaptation (one more forward pass)
  # Outer loop.
  outer_optimizer: str = "adam"
  outer_lr: float = 1e-3
  num_meta_steps: int = 70_000
  max_train_seconds: float = 0.0     # stop training after this much wall time (0: no limit); results say so
  steps_per_call: int = 1            # fuse this many meta-steps per jitted call
  # Logging and evaluation.
  log_every: int = 100
  eval_num_tasks: int = 600
  eval_seed: int = 1234
  eval_shots: tuple = (5, 10)         # K values evaluated (regression)
  eval_inner_steps: tuple = (1, 5, 10)
  eval_num_query: int = 100
  nonfinite_policy: str = "stop"     # stop | skip
  run_dir: str = ""                  # default: runs/<experiment>-<time>
  checkpoint_every: int = 0          # full meta-state checkpoint every N steps (0: only at the end)
  keep_checkpoints: int = 3          # how many checkpoints to keep
  # Omniglot.
  data_dir: str = ""                 # default: $METAJAX_DATA_DIR
  split: str = "maml"                # maml | lake
  num_ways: int = 5
  eval_every: int = 0                # periodic validation (0: never)
  # Algorithm-specific (metajax/algorithms). Each algorithm's `check(config)`
  # validates the fields it reads; other algorithms ignore them.
  outer_schedule: str = "constant"   # constant | cosine | linear (outer lr decays to 0 over num_meta_steps)
  reptile_serial: bool = False       # reptile: interpolate task after task, epsilon = outer_lr (outer sgd)
  head_name: str = ""                # anil | boil | protonet: the head submodule ("": last top-level one)
  msl_anneal_steps: int = 7_500      # mamlpp: multi-step-loss weights go from uniform to last-step-only
  first_order_until: int = 25_000    # mamlpp: first-order meta-gradients before this meta-step
  imaml_lambda: float = 1.0          # imaml: proximal strength lambda in L(phi) + lambda/2 |phi - theta|^2
  cg_steps: int = 5                  # imaml: conjugate-gradient iterations for (I + H/lambda)^-1 g
  # Devices (metajax/sharding.py).
  num_devices: int = 1               # shard the meta-batch over this many devices (0: all, of every host)


POSITIVE_INTS = ("meta_batch_size", "num_support", "num_query", "num_meta_steps",
                 "steps_per_call", "log_every", "eval_num_tasks",
                 "eval_num_query", "num_ways", "keep_checkpoints")
POSITIVE_FLOATS = ("inner_lr", "outer_lr")
CHOICES = {
    "task": ("sine", "linear", "omniglot"),
    "inner_optimizer": ("sgd", "adam"),
    "outer_optimizer": ("adam", "sgd"),
    "nonfinite_policy": ("stop", "skip"),
    "outer_schedule": ("constant", "cosine", "linear"),
    "model": ("mlp", "conv4", "conv4_strided"),
    "split": ("maml", "lake"),
    "conv": ("auto", "fast", "im2col", "reference"),
    "dense": ("auto", "fast", "plain"),
    "activation": ("relu", "tanh", "gelu", "swish", "softplus", "sigmoid",
                   "identity"),
}


class ConfigError(ValueError):
  """A config field has a bad name or value; the message names the field."""


def field_types() -> dict:
  hints = typing.get_type_hints(Config)
  return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _unknown_field(name: str) -> ConfigError:
  close = difflib.get_close_matches(name, list(field_types()), n=3)
  hint = f"; did you mean {', '.join(close)}?" if close else ""
  return ConfigError(f"unknown config field {name!r}{hint} "
                     "(run with --help for the list)")


def parse_value(name: str, text: str):
  """Parses the command-line text for field `name` by the field's type."""
  types = field_types()
  if name not in types:
    raise _unknown_field(name)
  kind = types[name]
  try:
    if kind is bool:
      lowered = text.strip().lower()
      if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError
      return lowered in ("true", "1", "yes")
    if kind is int:
      return int(text)
    if kind is float:
      return float(text)
    if kind is tuple:
      parts = [p for p in text.replace("(", "").replace(")", "").split(",")
               if p.strip()]
      default = getattr(Config(), name)
      as_int = default and all(isinstance(v, int) for v in default)
      return tuple(int(p) if as_int else float(p) for p in parts)
    return text
  except ValueError:
    expected = {bool: "true or false", int: "an integer", float: "a number",
                tuple: "a comma-separated list of numbers"}.get(kind, str(kind))
    raise ConfigError(f"config field {name!r}: expected {expected}, got "
                      f"{text!r}") from None


def override(config: Config, overrides: dict) -> Config:
  """`config` with `overrides` (name -> value or text) applied and validated."""
  values = {}
  for name, value in overrides.items():
    if name not in field_types():
      raise _unknown_field(name)
    values[name] = parse_value(name, value) if isinstance(value, str) else value
  return validate(dataclasses.replace(config, **values))


def validate(config: Config) -> Config:
  """Raises ConfigError naming the first bad field; returns `config`."""
  for name in POSITIVE_INTS:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f"config field {name!r}: expected a positive integer, "
                        f"got {value!r}")
  for name in POSITIVE_FLOATS:
    value = getattr(config, name)
    if not (isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0):
      raise ConfigError(f"config field {name!r}: expected a positive finite "
                        f"number, got {value!r}")
  if not isinstance(config.inner_steps, int) or config.inner_steps < 1:
    raise ConfigError("config field 'inner_steps': expected a positive "
                      f"integer, got {config.inner_steps!r}")
  for name, allowed in CHOICES.items():
    if getattr(config, name) not in allowed:
      raise ConfigError(f"config field {name!r}: expected one of {allowed}, "
                        f"got {getattr(config, name)!r}")
  for name in ("eval_shots", "eval_inner_steps", "hidden_sizes"):
    values = getattr(config, name)
    if not all(isinstance(v, int) and v >= (0 if name == "hidden_sizes" else 1)
               for v in values) or (name != "hidden_sizes" and not values):
      raise ConfigError(f"config field {name!r}: expected positive integers, "
                        f"got {values!r}")
  for name in ("amplitude_range", "phase_range", "x_range", "slope_range",
               "intercept_range"):
    low_high = getattr(config, name)
    if (len(low_high) != 2 or not all(math.isfinite(v) for v in low_high)
        or low_high[0] > low_high[1]):
      raise ConfigError(f"config field {name!r}: expected two finite numbers "
                        f"low,high with low <= high, got {low_high!r}")
  if not (math.isfinite(config.noise_std) and config.noise_std >= 0):
    raise ConfigError("config field 'noise_std': expected a finite number >= 0,"
                      f" got {config.noise_std!r}")
  if config.checkpoint_every < 0:
    raise ConfigError("config field 'checkpoint_every': expected an integer "
                      f">= 0, got {config.checkpoint_every!r}")
  if not (math.isfinite(config.max_train_seconds)
          and config.max_train_seconds >= 0):
    raise ConfigError("config field 'max_train_seconds': expected a finite "
                      f"number >= 0, got {config.max_train_seconds!r}")
  if config.eval_every < 0:
    raise ConfigError("config field 'eval_every': expected an integer >= 0, "
                      f"got {config.eval_every!r}")
  return config


def config_from_dict(values: dict) -> Config:
  """A validated Config from a saved `config.json` (lists become tuples)."""
  types = field_types()
  unknown = sorted(set(values) - set(types))
  if unknown:
    raise _unknown_field(unknown[0])
  fixed = {k: tuple(v) if types[k] is tuple else v for k, v in values.items()}
  return validate(Config(**fixed))


def describe_fields(config: Optional[Config] = None) -> str:
  """One line per field: name, type and current value (for --help)."""
  config = config or Config()
  lines = []
  for name, kind in field_types().items():
    lines.append(f"  --{name}={getattr(config, name)!r}  ({kind.__name__})")
  return "\n".join(lines)
