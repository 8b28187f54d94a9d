"""Config sections: typed, frozen, validated by the module that declares them.

A section is a frozen dataclass whose fields are declared with `setting`
(default, one-line help, optional check and choices). The module that reads
a section declares it; `metajax.training.config` assembles the sections into
a run's `Config`. Sections chosen by name (the task, the model, the
algorithm) set the class variable `NAME`.

    @dataclasses.dataclass(frozen=True)
    class ReptileConfig(Section):
      NAME = "reptile"
      serial: bool = setting(False, "interpolate task after task")

`validate(section, "algorithm")` checks every field's type, choices and
check, then the section's own `check()` (relations between its fields), and
raises `ConfigError` naming `algorithm.serial` and what was expected.
"""
import dataclasses
import math
import typing
from typing import Any, Callable, ClassVar, Optional


class ConfigError(ValueError):
  """A config field has a bad name or value; the message names the field."""


def setting(default: Any, help: str,  # pylint: disable=redefined-builtin
            check: Optional[Callable[[Any], Optional[str]]] = None,
            choices: Optional[tuple] = None):
  """A section field: its default, help text, and what it must satisfy.

  Args:
    default: the default value (immutable: numbers, strings, tuples).
    help: one line for `--help` and the docs.
    check: `fn(value) -> None` if fine, else a phrase saying what was
      expected ("a positive integer").
    choices: the allowed values, if the field is an enumeration.
  """
  return dataclasses.field(default=default, metadata={
      "help": help, "check": check, "choices": choices})


class Section:
  """Base of config sections (subclasses are frozen dataclasses)."""
  NAME: ClassVar[str] = ""

  def check(self) -> None:
    """Raises ConfigError for bad combinations of this section's fields."""


# ------------------------------------------------------------------- checks
def positive(value) -> Optional[str]:
  ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
  return None if ok else "a positive finite number"


def non_negative(value) -> Optional[str]:
  ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
  return None if ok else "a finite number >= 0"


def unit_interval(value) -> Optional[str]:
  ok = isinstance(value, (int, float)) and 0.0 <= value <= 1.0
  return None if ok else "a number in [0, 1]"


def positive_numbers(values) -> Optional[str]:
  ok = len(values) > 0 and all(positive(v) is None for v in values)
  return None if ok else "one or more positive finite numbers"


def positive_int(value) -> Optional[str]:
  return None if value >= 1 else "a positive integer"


def non_negative_int(value) -> Optional[str]:
  return None if value >= 0 else "an integer >= 0"


def positive_ints(values) -> Optional[str]:
  ok = len(values) > 0 and all(v >= 1 for v in values)
  return None if ok else "one or more positive integers"


def non_negative_ints(values) -> Optional[str]:
  return None if all(v >= 0 for v in values) else "integers >= 0"


def interval(values) -> Optional[str]:
  ok = (len(values) == 2 and all(math.isfinite(v) for v in values)
        and values[0] <= values[1])
  return None if ok else "two finite numbers low,high with low <= high"


# ------------------------------------------------------------- type checking
def field_types(cls) -> dict:
  """`{field name: annotation}` of a section class."""
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _describe(kind) -> str:
  if kind is bool:
    return "true or false"
  if kind is int:
    return "an integer"
  if kind is float:
    return "a number"
  if kind is str:
    return "a string"
  if typing.get_origin(kind) is tuple:
    element = typing.get_args(kind)[0]
    return ("a comma-separated list of integers" if element is int
            else "a comma-separated list of numbers")
  return str(kind)


def _has_type(value, kind) -> bool:
  if kind is bool:
    return isinstance(value, bool)
  if kind is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if kind is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if kind is str:
    return isinstance(value, str)
  if typing.get_origin(kind) is tuple:
    element = typing.get_args(kind)[0]
    return isinstance(value, tuple) and all(_has_type(v, element)
                                            for v in value)
  return True


def coerce(kind, value):
  """`value` as the field type `kind` where that loses nothing (JSON lists
  to tuples, integral floats stay floats); anything else is returned as is."""
  if typing.get_origin(kind) is tuple and isinstance(value, list):
    value = tuple(value)
  if typing.get_origin(kind) is tuple and isinstance(value, tuple):
    element = typing.get_args(kind)[0]
    return tuple(float(v) if element is float and _has_type(v, int) else v
                 for v in value)
  if kind is float and _has_type(value, int):
    return float(value)
  return value


def parse_text(kind, text: str, name: str):
  """Parses command-line `text` for a field of type `kind` named `name`."""
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
    if typing.get_origin(kind) is tuple:
      element = typing.get_args(kind)[0]
      parts = [p for p in text.replace("(", "").replace(")", "").split(",")
               if p.strip()]
      return tuple(element(p) for p in parts)
    return text
  except ValueError:
    raise ConfigError(f"config field {name!r}: expected {_describe(kind)}, "
                      f"got {text!r}") from None


def validate(section: Section, path: str) -> Section:
  """Checks every field of `section` (at `path`, e.g. "inner"); returns it."""
  for f in dataclasses.fields(section):
    value, name = getattr(section, f.name), f"{path}.{f.name}"
    kind = field_types(type(section))[f.name]
    if not _has_type(value, kind):
      raise ConfigError(f"config field {name!r}: expected {_describe(kind)}, "
                        f"got {value!r}")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
      raise ConfigError(f"config field {name!r}: expected one of "
                        f"{list(choices)}, got {value!r}")
    check = f.metadata.get("check")
    expected = check(value) if check is not None else None
    if expected:
      raise ConfigError(f"config field {name!r}: expected {expected}, got "
                        f"{value!r}")
  section.check()
  return section


def describe(section: Section, path: str) -> list:
  """`--help` lines for `section`: flag, value, type and help."""
  lines = []
  for f in dataclasses.fields(section):
    kind = field_types(type(section))[f.name]
    choices = f.metadata.get("choices")
    if choices:
      kind_text = "|".join(str(c) for c in choices)
    elif typing.get_origin(kind) is tuple:
      kind_text = ("ints" if typing.get_args(kind)[0] is int
                   else "numbers") + ", comma-separated"
    else:
      kind_text = kind.__name__
    value = getattr(section, f.name)
    shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else value
    lines.append(f"  --{path}.{f.name}={shown}  ({kind_text}) "
                 f"{f.metadata.get('help', '')}".rstrip())
  return lines
