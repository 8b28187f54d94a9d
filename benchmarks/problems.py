"""The benchmarked problems, as metajax `Config`s, and how each is built.

Sine: MAML's regression (MLP 1-40-40-1, meta-batch 25, K=10). Omniglot:
Conv4, 1-shot, 5-way (15 queries per class, meta-batch 32, inner rate 0.4)
and 20-way (5 queries per class, meta-batch 16, 5 steps at 0.1), as in the
MAML paper; "omniglot5s" is the 5-way problem on Finn's strided Conv4 (the
network the MAML paper trained on Omniglot). Omniglot uses the real images when $METAJAX_DATA_DIR holds them,
else random images of the same shape (a meta-step's cost does not depend on
pixel values); each row says which. Every row times the meta-step alone, as
the PyTorch rows do: the post-adaptation loss and its gradient, without the
pre-adaptation query metrics training logs (`pre_metrics=False`).
"""
import dataclasses
import itertools
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from metajax import algorithms
from metajax.core import losses
from metajax.training import trainer as train
from metajax.training.config import Config
from metajax.core.meta_step import init_meta_state, make_meta_step

FAMILIES = ("sine", "omniglot5", "omniglot20", "omniglot5s")
# Omniglot families: (ways, Conv4 model); "omniglot5s" is Finn's strided net.
OMNIGLOT = {"omniglot5": (5, "conv4"), "omniglot20": (20, "conv4"),
            "omniglot5s": (5, "conv4_strided")}
RANDOM_CHARACTERS = 1100  # the MAML split's train characters
NUM_DRAWERS = 20


@dataclasses.dataclass(frozen=True)
class Case:
  """One benchmark row: a name, its family and the config it runs.

  `tasks_given` times the meta-step with its tasks passed in, drawn before
  the timing (`build(..., tasks_given=True)`), instead of drawn inside it.
  """
  name: str
  family: str
  config: Config
  tasks_given: bool = False


def _order(first_order: bool) -> str:
  return "1st" if first_order else "2nd"


def sine_config(quick: bool = False, **overrides) -> Config:
  """The MAML sine config (tiny widths and batch under `quick`)."""
  config = Config(task="sine", algorithm="maml", model="mlp",
                  hidden_sizes=(40, 40), meta_batch_size=25, num_support=10,
                  num_query=10, inner_lr=0.01, outer_lr=1e-3,
                  num_meta_steps=1000, log_every=10, pre_metrics=False)
  if quick:
    config = dataclasses.replace(config, hidden_sizes=(8, 8),
                                 meta_batch_size=4, num_support=5, num_query=5)
  return dataclasses.replace(config, **overrides)


def omniglot_config(ways: int, quick: bool = False, **overrides) -> Config:
  """MAML's Omniglot 1-shot config for `ways` 5 or 20 (tiny under `quick`)."""
  config = Config(task="omniglot", algorithm="maml", model="conv4",
                  num_ways=ways, num_support=1,
                  num_query=15 if ways == 5 else 5,
                  meta_batch_size=32 if ways == 5 else 16,
                  inner_steps=1 if ways == 5 else 5,
                  inner_lr=0.4 if ways == 5 else 0.1, outer_lr=1e-3,
                  num_meta_steps=1000, log_every=10, eval_num_query=15,
                  pre_metrics=False)
  if quick:
    config = dataclasses.replace(config, num_ways=2, num_query=1,
                                 meta_batch_size=2)
  return dataclasses.replace(config, **overrides)


def cases(family: str, quick: bool = False, conv: str = "auto",
          dense: str = "auto") -> list:
  """The rows of `family`: inner steps x order, plus fused rows for sine.

  `conv` is the Omniglot rows' Conv4 formulation (`Config.conv`), `dense`
  the sine MLP's layer product (`Config.dense`).
  """
  if family == "sine":
    if quick:
      config = sine_config(True, inner_steps=2, dense=dense)
      return [Case("sine 2-step 2nd fused x2", family,
                   dataclasses.replace(config, steps_per_call=2)),
              Case("sine 2-step 2nd tasks given", family, config, True)]
    rows = []
    for steps in (1, 5):
      for first_order in (False, True):
        config = sine_config(inner_steps=steps, first_order=first_order,
                             dense=dense)
        name = f"sine {steps}-step {_order(first_order)}"
        rows.append(Case(name, family, config))
        rows.append(Case(f"{name} fused x10", family,
                         dataclasses.replace(config, steps_per_call=10)))
        if not first_order:
          rows.append(Case(f"{name} tasks given", family, config, True))
    return rows
  ways, model = OMNIGLOT[family]
  strided = " strided" if model == "conv4_strided" else ""
  if quick:
    config = omniglot_config(ways, True, conv=conv, model=model)
    return [Case(f"omniglot {ways}-way{strided} (2-way quick) "
                 f"{config.inner_steps}-step 2nd", family, config)]
  steps_list = (5,) if ways == 20 else (1,) if strided else (1, 5)
  return [Case(f"omniglot {ways}-way 1-shot{strided} {steps}-step "
               f"{_order(fo)}", family,
               omniglot_config(ways, inner_steps=steps, first_order=fo,
                               conv=conv, model=model))
          for steps in steps_list for fo in (False, True)]


def select(cases_, rows: str = "") -> list:
  """The cases whose name contains one of the comma-separated `rows` (all
  cases when `rows` is empty), e.g. `"20-way,5-way 1-shot 5-step 1st"`."""
  patterns = [p.strip() for p in rows.split(",") if p.strip()]
  return [c for c in cases_
          if not patterns or any(p in c.name for p in patterns)]


def conv4_missing() -> Optional[str]:
  """Why the Omniglot rows cannot run (None when `Conv4` imports)."""
  try:
    from metajax.models.conv4 import Conv4  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return f"metajax.models.conv4.Conv4 is not importable ({e})"
  return None


def omniglot_data_dir() -> Optional[str]:
  """$METAJAX_DATA_DIR when it holds `omniglot/`, else None."""
  data_dir = os.environ.get("METAJAX_DATA_DIR", "")
  return data_dir if os.path.isdir(os.path.join(data_dir, "omniglot")) else None


def random_omniglot_split(num_characters: int, seed: int = 0):
  """`OmniglotTasks` of uniformly random binary 28x28 images."""
  from metajax.tasks.omniglot import OmniglotTasks  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = 255 * (rng.random((num_characters, NUM_DRAWERS, 28, 28)) < 0.2)
  return OmniglotTasks(jnp.asarray(images.astype(np.uint8)),
                       jnp.arange(num_characters, dtype=jnp.int32))


def random_omniglot_problem(config: Config, num_characters: int):
  """The Omniglot `Problem` of `config` on random images."""
  from metajax.tasks.omniglot import make_task_sampler  # pylint: disable=g-import-not-at-top
  from metajax.tasks.omniglot.task import build_model  # pylint: disable=g-import-not-at-top
  from metajax.tasks.base import Problem  # pylint: disable=g-import-not-at-top
  split = random_omniglot_split(num_characters)
  model = build_model(config)
  sampler = make_task_sampler(split, ways=config.num_ways,
                              shots=config.num_support,
                              queries=config.num_query,
                              num_tasks=config.meta_batch_size)
  return Problem(
      model=model,
      init_params=lambda key: model.init(key, jnp.zeros((1, 28, 28, 1))),
      **losses.classification_fns(model.apply), train_sampler=sampler,
      classification=True)


def run_from_problem(config: Config, problem) -> train.Run:
  """What `train.build_run` does, for a `problem` built here."""
  train.check_config(config)
  algorithm = algorithms.get_algorithm(config.algorithm)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  outer_optimizer = train.make_outer_optimizer(config)
  params = problem.init_params(init_key)
  if hasattr(algorithm, "init_meta_params"):
    params = algorithm.init_meta_params(config, params)
  state = init_meta_state(params, outer_optimizer, train_key)
  step_fn = make_meta_step(
      algorithm.make_meta_grad(config, problem), outer_optimizer,
      task_sampler=problem.train_sampler,
      steps_per_call=config.steps_per_call,
      nonfinite_policy=config.nonfinite_policy)
  return train.Run(config, problem, state, step_fn, outer_optimizer)


def build(config: Config, quick: bool = False, tasks_given: bool = False):
  """`(train.Run, data_description)` for `config`.

  Omniglot runs on the real split when `omniglot_data_dir()` finds it (and
  not under `quick`), else on random images. `tasks_given`: the run's step
  takes its tasks from a few batches drawn up front (`with_tasks_given`).
  """
  if tasks_given:
    run, data = build(config, quick)
    return (with_tasks_given(run),
            f"{data}, {GIVEN_BATCHES} batches drawn before timing")
  if config.task != "omniglot":
    return train.build_run(config), f"synthetic {config.task} tasks"
  data_dir = None if quick else omniglot_data_dir()
  if data_dir:
    config = dataclasses.replace(config, data_dir=data_dir)
    return train.build_run(config), f"Omniglot images from {data_dir}"
  num_characters = 8 if quick else RANDOM_CHARACTERS
  problem = random_omniglot_problem(config, num_characters)
  return (run_from_problem(config, problem),
          f"random 28x28 images ({num_characters} characters; "
          "METAJAX_DATA_DIR unset)")


GIVEN_BATCHES = 8


def with_tasks_given(run: train.Run) -> train.Run:
  """`run` whose `step_fn(state)` is the jitted `step(state, tasks)` without
  a sampler, on `GIVEN_BATCHES` task batches drawn up front, in turn.

  This times the meta-step alone, as a caller who brings their own tasks
  (a data pipeline) runs it; the other rows draw tasks inside the step.
  """
  if run.config.steps_per_call != 1:
    raise ValueError("tasks_given times unfused steps (steps_per_call=1), "
                     f"got steps_per_call={run.config.steps_per_call}")
  algorithm = algorithms.get_algorithm(run.config.algorithm)
  step = make_meta_step(algorithm.make_meta_grad(run.config, run.problem),
                        run.outer_optimizer,
                        nonfinite_policy=run.config.nonfinite_policy)
  draw = jax.jit(run.problem.train_sampler)
  batches = [draw(key) for key in jax.random.split(jax.random.key(1),
                                                   GIVEN_BATCHES)]
  next_batch = itertools.cycle(batches).__next__

  def step_fn(state):
    return step(state, next_batch())

  step_fn.lower = lambda state: step.lower(state, batches[0])
  return dataclasses.replace(run, step_fn=step_fn)
