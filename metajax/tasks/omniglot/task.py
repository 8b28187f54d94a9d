"""Omniglot N-way K-shot classification: the `Problem` and its evaluation.

Data come from `metajax.tasks.omniglot` (official zips, cached once); tasks
are sampled inside the jitted meta-step. The meta-test protocol is the MAML
paper's: `eval.num_tasks` fixed tasks from `eval.seed` on the held-out
characters, the trained ways and shots, `task.eval_queries` queries per
class, accuracy and loss after each of `eval.inner_steps` (95% intervals).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp

from metajax.backend import Formulations
from metajax.core import losses
from metajax.core.evaluation import adaptation_curves, summarize_curves
from metajax.models import configs as model_configs
from metajax.settings import ConfigError, Section, positive_int, setting
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.omniglot import (
    check_task_shape, load_omniglot, make_split, make_task_sampler,
    sample_tasks)
from metajax.tasks.omniglot.images import SPLIT_NAMES

SPLIT_SEED = 0  # the character split is fixed across training seeds


@dataclasses.dataclass(frozen=True)
class OmniglotConfig(Section):
  """Omniglot N-way K-shot tasks (the `task` section)."""
  NAME = "omniglot"
  ways: int = setting(5, "classes per task (N)", check=positive_int)
  shots: int = setting(1, "support examples per class (K)",
                       check=positive_int)
  queries: int = setting(1, "query examples per class in meta-training",
                         check=positive_int)
  eval_queries: int = setting(15, "query examples per class at meta-test",
                              check=positive_int)
  data_dir: str = setting("", "folder holding omniglot/ ('': "
                          "$METAJAX_DATA_DIR)")
  split: str = setting("maml", "character split", choices=SPLIT_NAMES)


@functools.lru_cache(maxsize=2)
def _splits(data_dir: str, split: str):
  return make_split(load_omniglot(data_dir or None), split, seed=SPLIT_SEED)


def build(config, formulations: Formulations) -> Problem:
  """The Omniglot problem; raises before compiling if tasks cannot be drawn."""
  task = config.task
  model_configs.require(config.model, ("conv4",), task.NAME)
  splits = _splits(task.data_dir, task.split)
  try:
    sampler = make_task_sampler(splits.train, ways=task.ways,
                                shots=task.shots, queries=task.queries,
                                num_tasks=config.outer.meta_batch_size)
  except ValueError as e:
    raise ConfigError(f"Omniglot tasks (task.ways={task.ways}, task.shots="
                      f"{task.shots}, task.queries={task.queries}): {e}"
                      ) from None
  try:
    for split in ("val", "test"):
      check_task_shape(getattr(splits, split), 1, task.ways, task.shots,
                       task.eval_queries)
  except ValueError as e:
    raise ConfigError(f"Omniglot evaluation tasks (task.ways={task.ways}, "
                      f"task.shots={task.shots}, task.eval_queries="
                      f"{task.eval_queries}): {e}") from None
  model = model_configs.build(config.model, task.ways, formulations)

  def eval_tasks(split="test", num_tasks=None):
    num_tasks = num_tasks or config.eval.num_tasks
    tasks = sample_tasks(getattr(splits, split),
                         jax.random.key(config.eval.seed), num_tasks,
                         task.ways, task.shots, task.eval_queries)
    return {f"{task.ways}-way {task.shots}-shot {split}": tasks}

  def evaluate(params, inner, split="test", num_tasks=None):
    """Accuracy and loss after each of `eval.inner_steps` inner steps."""
    steps = (0,) + tuple(config.eval.inner_steps)
    results = {}
    for setting_name, tasks in eval_tasks(split, num_tasks).items():
      count = jax.tree.leaves(tasks)[0].shape[0]
      curves = adaptation_curves(params, inner, tasks, max(steps),
                                 chunk_size=min(50, count))
      results[setting_name] = summarize_curves(curves, steps)
    return results

  return Problem(
      kind="classification", model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 28, 28, 1))),
      **losses.classification_fns(model.apply), train_sampler=sampler,
      evaluate=evaluate, eval_tasks=eval_tasks, formulations=formulations,
      num_classes=task.ways)


OMNIGLOT = TaskDomain(name="omniglot", config_class=OmniglotConfig,
                      build=build)
