"""Omniglot N-way K-shot classification as a `Problem`, and its evaluation.

Data come from `metajax.tasks.omniglot` (official zips, cached once); tasks are
sampled inside the jitted meta-step. `num_support` and `num_query` are the
shots and queries per class; `num_ways` the classes per task.
"""
import functools

import jax
import jax.numpy as jnp

from metajax.core import losses
from metajax.training.config import Config, ConfigError
from metajax.tasks.omniglot import (
    check_task_shape, load_omniglot, make_split, make_task_sampler, sample_tasks)
from metajax.core.evaluation import adaptation_curves, summarize_curves
from metajax.tasks.base import Problem

SPLIT_SEED = 0  # the character split is fixed across training seeds


@functools.lru_cache(maxsize=2)
def _splits(data_dir: str, split: str):
  return make_split(load_omniglot(data_dir or None), split, seed=SPLIT_SEED)


def build_model(config: Config):
  from metajax.models.conv4 import Conv4  # pylint: disable=g-import-not-at-top
  return Conv4(num_classes=config.num_ways,
               strided=config.model == "conv4_strided", conv=config.conv)


def build_omniglot(config: Config) -> Problem:
  """The Omniglot problem; raises before compiling if tasks cannot be drawn."""
  if config.model not in ("conv4", "conv4_strided"):
    raise ConfigError("config field 'model': Omniglot needs 'conv4' or "
                      f"'conv4_strided', got {config.model!r}")
  splits = _splits(config.data_dir, config.split)
  try:
    sampler = make_task_sampler(splits.train, ways=config.num_ways,
                                shots=config.num_support,
                                queries=config.num_query,
                                num_tasks=config.meta_batch_size)
  except ValueError as e:
    raise ConfigError(f"Omniglot tasks (num_ways={config.num_ways}, "
                      f"num_support={config.num_support}, num_query="
                      f"{config.num_query}): {e}") from None
  try:
    for split in ("val", "test"):
      check_task_shape(getattr(splits, split), 1, config.num_ways,
                       config.num_support, config.eval_num_query)
  except ValueError as e:
    raise ConfigError(f"Omniglot evaluation tasks (eval_num_query="
                      f"{config.eval_num_query}): {e}") from None
  model = build_model(config)
  return Problem(
      model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 28, 28, 1))),
      **losses.classification_fns(model.apply), train_sampler=sampler, classification=True, data=splits)


def evaluate_classification(params, problem, config: Config, inner,
                            split: str = "test", num_tasks=None) -> dict:
  """Accuracy and loss on `num_tasks` fixed tasks of `split` after each of
  `config.eval_inner_steps` steps (95% intervals).

  Tasks come from `config.eval_seed`, with the trained ways and shots and
  `config.eval_num_query` queries per class.
  """
  num_tasks = num_tasks or config.eval_num_tasks
  dataset = getattr(problem.data, split)
  tasks = sample_tasks(dataset, jax.random.key(config.eval_seed), num_tasks,
                       config.num_ways, config.num_support,
                       config.eval_num_query)
  curves = adaptation_curves(params, inner, tasks, max(config.eval_inner_steps),
                             chunk_size=min(50, num_tasks))
  return {f"{config.num_ways}-way {config.num_support}-shot {split}":
          summarize_curves(curves, (0,) + tuple(config.eval_inner_steps))}
