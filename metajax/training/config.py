"""A run's configuration: nested sections, overridable from the command line.

    Config(task=SineConfig(...), model=MLPConfig(...), algorithm=MamlConfig(),
           inner=InnerConfig(...), outer=OuterConfig(...), eval=EvalConfig(),
           run=RunConfig(), formulations=FormulationsConfig())

Each section is declared and validated by the module that reads it: the task
section by its domain (`metajax.tasks`), the model's by `metajax.models.configs`,
the algorithm's by its module (`metajax.algorithms`), `inner` by
`metajax.algorithms.base`, `eval` by `metajax.tasks.base`; `outer`, `run` and
`formulations` are the trainer's, below. `task`, `model` and `algorithm` are
chosen by name. An experiment is a Python file whose `get_config()` returns
a `Config`; variants `override` a base.

Overrides are `{"inner.steps": "5", "algorithm": "imaml", "algorithm.lam":
2.0}` (text from the command line is parsed by the field's type): a name
switches its section to that kind's defaults first, then fields apply.
`config.json` holds `to_dict(config)` with `schema_version`; `from_dict`
also reads the flat configs of schema 1 (`migrate_v1`).
"""
import dataclasses
import difflib
from typing import Any, Optional

from metajax import algorithms, backend, tasks
from metajax.algorithms.base import InnerConfig
from metajax.models import configs as model_configs
from metajax.settings import (
    ConfigError, Section, coerce, describe as describe_section, field_types,
    non_negative, non_negative_int, parse_text, positive, positive_int,
    setting, validate as validate_section)
from metajax.tasks.base import EvalConfig
from metajax.tasks.regression import SineConfig

SCHEMA_VERSION = 2


@dataclasses.dataclass(frozen=True)
class OuterConfig(Section):
  """Meta-training: the outer optimizer, the meta-batch and the budget."""
  optimizer: str = setting("adam", "outer optimizer", choices=("adam", "sgd"))
  lr: float = setting(1e-3, "outer learning rate", check=positive)
  schedule: str = setting("constant", "outer rate schedule over "
                          "num_meta_steps (decays to 0)",
                          choices=("constant", "cosine", "linear"))
  meta_batch_size: int = setting(25, "tasks per meta-step",
                                 check=positive_int)
  num_meta_steps: int = setting(70_000, "meta-steps to train",
                                check=positive_int)
  steps_per_call: int = setting(1, "meta-steps fused into one jitted call",
                                check=positive_int)
  max_train_seconds: float = setting(
      0.0, "stop after the first call past this much wall time (0: no "
      "limit)", check=non_negative)
  nonfinite_policy: str = setting(
      "stop", "a non-finite loss or gradient stops the run (keeping the last "
      "good state) or skips that update", choices=("stop", "skip"))

  def check(self):
    if self.num_meta_steps % self.steps_per_call:
      raise ConfigError(
          f"config field 'outer.num_meta_steps' ({self.num_meta_steps}) must "
          f"be a multiple of 'outer.steps_per_call' ({self.steps_per_call})")


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
  """Seed, logging, checkpoints and devices of a run."""
  seed: int = setting(0, "root PRNG seed (initialisation and training tasks)")
  log_every: int = setting(100, "write metrics every N meta-steps",
                           check=positive_int)
  pre_metrics: bool = setting(True, "also log query metrics before "
                              "adaptation (one more forward pass)")
  checkpoint_every: int = setting(0, "checkpoint the meta-state every N "
                                  "meta-steps (0: only at the end)",
                                  check=non_negative_int)
  keep_checkpoints: int = setting(3, "checkpoints kept", check=positive_int)
  num_devices: int = setting(1, "shard the meta-batch over this many "
                             "devices (0: all, of every host)",
                             check=non_negative_int)


_FLAG = ("", "true", "false")


@dataclasses.dataclass(frozen=True)
class FormulationsConfig(Section):
  """Which equal formulation of each layer and step to run
  (`metajax.backend.Formulations`); '' takes the preset's choice."""
  preset: str = setting("auto", "auto: the backend's fast paths (CPU's on "
                        "CPU, portable elsewhere)",
                        choices=("auto", "cpu", "portable"))
  conv: str = setting("", "Conv4 convolution",
                      choices=("",) + backend.CONVS)
  dense: str = setting("", "MLP layer product",
                       choices=("",) + backend.DENSES)
  max_pool: str = setting("", "Conv4 max-pool tangent",
                          choices=("",) + backend.MAX_POOLS)
  fold_norm: str = setting("", "fold Conv4's first batch norm into its conv",
                           choices=_FLAG)
  first_step_outside_scan: str = setting(
      "", "second-order inner loops take their first step before the scan",
      choices=_FLAG)
  prefetch_tasks: str = setting("", "an unfused step draws the next step's "
                                "tasks", choices=_FLAG)


SECTIONS = ("task", "model", "algorithm", "inner", "outer", "eval", "run",
            "formulations")


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run, as sections (see the module docstring)."""
  task: Section = SineConfig()
  model: Section = model_configs.MLPConfig()
  algorithm: Section = algorithms.get("maml").config_class()
  inner: InnerConfig = InnerConfig()
  outer: OuterConfig = OuterConfig()
  eval: EvalConfig = EvalConfig()
  run: RunConfig = RunConfig()
  formulations: FormulationsConfig = FormulationsConfig()


def variants(section: str) -> Optional[dict]:
  """`{name: section class}` for the sections chosen by name, else None."""
  if section == "task":
    return {name: d.config_class for name, d in tasks.REGISTRY.items()}
  if section == "model":
    return dict(model_configs.CONFIGS)
  if section == "algorithm":
    return {name: a.config_class for name, a in algorithms.REGISTRY.items()}
  return None


def _section_class(section: str, name: Optional[str] = None):
  choices = variants(section)
  if choices is None:
    return type(getattr(Config(), section))
  if name not in choices:
    raise ConfigError(f"config field {section!r}: unknown {section} "
                      f"{name!r}; expected one of {sorted(choices)}")
  return choices[name]


# ------------------------------------------------------------ validation
def validate(config: Config) -> Config:
  """Raises ConfigError naming the first bad field; returns `config`."""
  if not isinstance(config, Config):
    raise ConfigError(f"a config must be a metajax Config, got "
                      f"{type(config).__name__}")
  for section in SECTIONS:
    value = getattr(config, section)
    expected = _section_class(section, getattr(value, "NAME", None))
    if type(value) is not expected:  # pylint: disable=unidiomatic-typecheck
      raise ConfigError(f"config section {section!r}: expected a "
                        f"{expected.__name__}, got {type(value).__name__}")
    validate_section(value, section)
  if config.run.checkpoint_every % config.run.log_every:
    raise ConfigError(
        f"config field 'run.checkpoint_every' ({config.run.checkpoint_every})"
        f" must be a multiple of 'run.log_every' ({config.run.log_every})")
  if config.run.log_every % config.outer.steps_per_call:
    raise ConfigError(
        f"config field 'run.log_every' ({config.run.log_every}) must be a "
        f"multiple of 'outer.steps_per_call' ({config.outer.steps_per_call})")
  return config


def resolve_formulations(config: Config, backend_name: Optional[str] = None
                         ) -> backend.Formulations:
  """The formulations a run uses: the preset, then the explicit fields.

  An algorithm that takes `jax.jvp` through the model (iMAML) gets the
  plain MLP product under the presets; asking for 'fast' there is an error.
  """
  settings = config.formulations
  forward_mode = algorithms.get(config.algorithm.NAME).uses_forward_mode
  if settings.preset == "auto":
    chosen = backend.for_backend(backend_name, forward_mode=forward_mode)
  else:
    chosen = backend.CPU if settings.preset == "cpu" else backend.PORTABLE
    if forward_mode:
      chosen = dataclasses.replace(chosen, dense="plain")
  explicit = {}
  for name in ("conv", "dense", "max_pool"):
    if getattr(settings, name):
      explicit[name] = getattr(settings, name)
  for name in ("fold_norm", "first_step_outside_scan", "prefetch_tasks"):
    if getattr(settings, name):
      explicit[name] = getattr(settings, name) == "true"
  if forward_mode and explicit.get("dense") == "fast":
    raise ConfigError(
        "config field 'formulations.dense': 'fast' has no forward-mode "
        f"derivative and {config.algorithm.NAME} takes jax.jvp through the "
        "model; expected '' or 'plain'")
  return dataclasses.replace(chosen, **explicit)


# ------------------------------------------------------------- overrides
def _unknown_field(name: str, config: Config) -> ConfigError:
  if name in V1_FIELDS:
    new = V1_FIELDS[name]
    return ConfigError(f"unknown config field {name!r}: it is now "
                       f"{new!r} (run with --help for the list)")
  known = list(SECTIONS) + [f"{s}.{f}" for s in SECTIONS
                            for f in field_types(type(getattr(config, s)))]
  close = difflib.get_close_matches(name, known, n=3)
  hint = f"; did you mean {', '.join(close)}?" if close else ""
  return ConfigError(f"unknown config field {name!r}{hint} "
                     "(run with --help for the list)")


def override(config: Config, overrides: dict) -> Config:
  """`config` with `overrides` (dotted name -> value or text) applied.

  A bare section name (`"algorithm": "imaml"`) switches that section to the
  named kind's defaults, before any field is set. Returns the validated
  config; raises ConfigError naming the field.
  """
  sections = {s: getattr(config, s) for s in SECTIONS}
  fields = {}
  for name, value in overrides.items():
    if name in SECTIONS:
      if variants(name) is None:
        raise ConfigError(f"config section {name!r} is not chosen by name; "
                          f"set its fields, e.g. --{name}.FIELD=VALUE")
      if sections[name].NAME != value:
        sections[name] = _section_class(name, value)()
      continue
    section, dot, field_name = name.partition(".")
    if not dot or section not in SECTIONS:
      raise _unknown_field(name, config)
    fields[(section, field_name)] = value
  for (section, field_name), value in fields.items():
    types = field_types(type(sections[section]))
    if field_name not in types:
      raise _unknown_field(f"{section}.{field_name}",
                           dataclasses.replace(config, **sections))
    kind = types[field_name]
    value = (parse_text(kind, value, f"{section}.{field_name}")
             if isinstance(value, str) and kind is not str
             else coerce(kind, value))
    sections[section] = dataclasses.replace(sections[section],
                                            **{field_name: value})
  return validate(Config(**sections))


def describe(config: Config) -> str:
  """`--help` text: every section's flags with their current values."""
  lines = []
  for section in SECTIONS:
    value = getattr(config, section)
    choices = variants(section)
    title = f"{section}" + (f" = {value.NAME} (one of {sorted(choices)}; "
                            f"--{section}=NAME)" if choices else "")
    lines.append(title)
    lines.extend(describe_section(value, section) or ["  (no fields)"])
  return "\n".join(lines)


# ---------------------------------------------------------- serialisation
def to_dict(config: Config) -> dict:
  """The JSON form of `config.json`: schema version and nested sections."""
  out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
  for section in SECTIONS:
    value = getattr(config, section)
    body = dataclasses.asdict(value)
    if variants(section) is not None:
      body = {"name": value.NAME, **body}
    out[section] = body
  return out


def from_dict(values: dict) -> Config:
  """A validated Config from `to_dict` output, or from a schema-1 (flat)
  `config.json`; unknown fields are errors naming them."""
  values = dict(values)
  version = values.pop("schema_version", 1)
  if version == 1:
    values = migrate_v1(values)
  elif version != SCHEMA_VERSION:
    raise ConfigError(f"config schema_version {version!r} is not one this "
                      f"metajax reads (1 or {SCHEMA_VERSION})")
  overrides = {}
  for section, body in values.items():
    if section not in SECTIONS:
      raise ConfigError(f"unknown config section {section!r}; expected one "
                        f"of {list(SECTIONS)}")
    body = dict(body)
    if variants(section) is not None:
      overrides[section] = body.pop("name")
    overrides.update({f"{section}.{k}": v for k, v in body.items()})
  return override(Config(), overrides)


# Where each field of the schema-1 flat config went. Fields whose place
# depends on the task or the model are handled in `migrate_v1`.
V1_FIELDS = {
    "seed": "run.seed", "log_every": "run.log_every",
    "pre_metrics": "run.pre_metrics",
    "checkpoint_every": "run.checkpoint_every",
    "keep_checkpoints": "run.keep_checkpoints",
    "num_devices": "run.num_devices",
    "meta_batch_size": "outer.meta_batch_size",
    "outer_optimizer": "outer.optimizer", "outer_lr": "outer.lr",
    "outer_schedule": "outer.schedule",
    "num_meta_steps": "outer.num_meta_steps",
    "max_train_seconds": "outer.max_train_seconds",
    "steps_per_call": "outer.steps_per_call",
    "nonfinite_policy": "outer.nonfinite_policy",
    "inner_steps": "inner.steps", "inner_lr": "inner.lr",
    "inner_optimizer": "inner.optimizer", "first_order": "inner.first_order",
    "remat": "inner.remat",
    "eval_num_tasks": "eval.num_tasks", "eval_seed": "eval.seed",
    "eval_inner_steps": "eval.inner_steps", "eval_every": "eval.every",
    "conv": "formulations.conv", "dense": "formulations.dense",
    "hidden_sizes": "model.hidden_sizes", "activation": "model.activation",
    "init_stddev": "model.init_stddev",
    "num_ways": "task.ways", "data_dir": "task.data_dir",
    "split": "task.split", "eval_shots": "task.eval_shots",
    "amplitude_range": "task.amplitude_range",
    "phase_range": "task.phase_range", "x_range": "task.x_range",
    "slope_range": "task.slope_range",
    "intercept_range": "task.intercept_range", "noise_std": "task.noise_std",
    "num_support": "task.support_points (regression) or task.shots "
                   "(omniglot)",
    "num_query": "task.query_points (regression) or task.queries (omniglot)",
    "eval_num_query": "task.eval_query_points (regression) or "
                      "task.eval_queries (omniglot)",
    "reptile_serial": "algorithm.serial", "head_name": "algorithm.head",
    "msl_anneal_steps": "algorithm.msl_anneal_steps",
    "first_order_until": "algorithm.first_order_until",
    "imaml_lambda": "algorithm.lam", "cg_steps": "algorithm.cg_steps",
    "task": "task", "algorithm": "algorithm", "model": "model",
    "run_dir": "the --run_dir option",
}


def migrate_v1(flat: dict) -> dict:
  """A schema-1 flat config dict as schema-2 sections (see `V1_FIELDS`).

  Only the fields the run's task, model and algorithm read are kept: the
  flat schema stored every algorithm's and task's fields in every run.
  """
  flat = dict(flat)
  flat.pop("experiment", None)
  flat.pop("run_dir", None)
  unknown = sorted(set(flat) - set(V1_FIELDS))
  if unknown:
    raise ConfigError(f"unknown field {unknown[0]!r} in a schema-1 config")
  task = flat.pop("task", "sine")
  model = flat.pop("model", "mlp")
  algorithm = flat.pop("algorithm", "maml")
  out = {"task": {"name": task},
         "model": {"name": "conv4" if model.startswith("conv4") else model},
         "algorithm": {"name": algorithm}}
  if model == "conv4_strided":
    out["model"]["strided"] = True
  regression = task in ("sine", "linear")
  renamed = {
      "num_support": "task.support_points" if regression else "task.shots",
      "num_query": "task.query_points" if regression else "task.queries",
      "eval_num_query": ("task.eval_query_points" if regression
                         else "task.eval_queries"),
      "conv": "formulations.conv", "dense": "formulations.dense"}
  for name, value in flat.items():
    path = renamed.get(name, V1_FIELDS[name])
    if name in ("conv", "dense") and value == "auto":
      continue  # the preset decides, as 'auto' did
    section, _, field_name = path.partition(".")
    target = _section_class(section, out.get(section, {}).get("name"))
    if field_name not in field_types(target):
      continue  # a field of another task, model or algorithm
    out.setdefault(section, {})[field_name] = value
  return out
