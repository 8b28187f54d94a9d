"""Task domains, one module or package each, picked by config name.

Each domain is a `TaskDomain` (`metajax.tasks.base`): its config section and
`build(config, formulations) -> Problem`, which owns the model choice, the
in-jit sampler and the evaluation protocol. The samplers of the synthetic
families are public too (`sample_sine_tasks`, `sample_linear_tasks`).
"""
from metajax.settings import ConfigError
from metajax.tasks import regression
from metajax.tasks.base import EvalConfig, Problem, TaskDomain
from metajax.tasks.omniglot import task as omniglot_task
from metajax.tasks.rl import cheetah_task, task as rl_task
from metajax.tasks.text import task as text_task
from metajax.tasks.regression_sampling import (
    LinearTasks, SineTasks, sample_linear_tasks, sample_sine_tasks)

REGISTRY = {domain.name: domain for domain in (
    regression.SINE, regression.LINEAR, omniglot_task.OMNIGLOT,
    text_task.HUFFPOST, text_task.CLINC150, rl_task.NAVIGATION,
    cheetah_task.CHEETAH_VEL, cheetah_task.CHEETAH_DIR)}


def available() -> list:
  return sorted(REGISTRY)


def get(name: str) -> TaskDomain:
  """The task domain called `name`; ConfigError listing the known names."""
  if name not in REGISTRY:
    raise ConfigError(f"config field 'task': unknown task {name!r}; expected "
                      f"one of {available()}")
  return REGISTRY[name]
