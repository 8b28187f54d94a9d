"""Few-shot text classification: HuffPost and CLINC150 task domains.

Data come from `metajax.tasks.text.corpus` (publishers' files, derived once
into a checksummed cache); episodes are sampled inside the jitted meta-step
from class-major token-id arrays (`sampling`). Classes are split, never
examples:

  huffpost (Bao et al. 2020): meta-train classes 0-19, validation 20-24,
    meta-test 25-40.
  clinc150: by domain (15 intents each), meta-train banking, credit_cards,
    kitchen_and_dining, home, auto_and_commute, travel (90 intents);
    validation utility, work (30); meta-test small_talk, meta (30).

Evaluation is Bao et al.'s protocol: `eval.num_tasks` fixed episodes from
`eval.seed` on the meta-test classes, the trained ways and shots,
`task.eval_queries` (25) queries per class, mean accuracy with its 95%
interval, after each of `eval.inner_steps` for gradient-based learners.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from metajax.backend import Formulations
from metajax.core import losses
from metajax.core.evaluation import adaptation_curves, summarize_curves
from metajax.models import configs as model_configs
from metajax.settings import (
    ConfigError, Section, non_negative_int, positive_int, setting)
from metajax.tasks.base import Problem, TaskDomain
from metajax.tasks.text import vocab
from metajax.tasks.text.corpus import load_corpus, load_vectors
from metajax.tasks.text.sampling import (
    TextTasks, check_task_shape, make_task_sampler, sample_tasks)

TEXT_MODELS = tuple(c.NAME for c in model_configs.TEXT_CONFIGS)
HUFFPOST_SPLIT = (range(0, 20), range(20, 25), range(25, 41))
CLINC_SPLIT = (("banking", "credit_cards", "kitchen_and_dining", "home",
                "auto_and_commute", "travel"), ("utility", "work"),
               ("small_talk", "meta"))


@dataclasses.dataclass(frozen=True)
class TextTaskConfig(Section):
  """N-way K-shot text classification (the `task` section)."""
  ways: int = setting(5, "classes per task (N)", check=positive_int)
  shots: int = setting(1, "support examples per class (K)",
                       check=positive_int)
  queries: int = setting(5, "query examples per class in meta-training",
                         check=positive_int)
  eval_queries: int = setting(25, "query examples per class at meta-test "
                              "(Bao et al.: 25)", check=positive_int)
  data_dir: str = setting("", "folder holding text/ ('': $METAJAX_DATA_DIR)")
  min_count: int = setting(5, "words seen fewer times are out of vocabulary "
                           "(zero vector)", check=positive_int)
  max_length: int = setting(0, "tokens (or n-grams) per example; 0: the "
                            "longest example's; shorter is an error",
                            check=non_negative_int)
  ngram: int = setting(3, "character n-gram size (model text_ngram)",
                       check=positive_int)
  num_buckets: int = setting(1 << 14, "hash buckets of the character "
                             "n-grams", check=positive_int)


@dataclasses.dataclass(frozen=True)
class HuffpostConfig(TextTaskConfig):
  """HuffPost headlines, 41 classes (Bao et al.'s split)."""
  NAME = "huffpost"


@dataclasses.dataclass(frozen=True)
class Clinc150Config(TextTaskConfig):
  """CLINC150 intents, 150 classes split by domain."""
  NAME = "clinc150"


@functools.lru_cache(maxsize=4)
def _corpus(name, data_dir, min_count, ngram, num_buckets):
  return load_corpus(name, data_dir or None, min_count=min_count,
                     ngram=ngram, num_buckets=num_buckets)


def split_classes(corpus, name):
  """(train, val, test) sorted class ids of the corpus (module docstring)."""
  if name == "huffpost":
    return tuple(np.array(r, np.int32) for r in HUFFPOST_SPLIT)
  groups = [str(g) for g in corpus.group_names]
  return tuple(np.flatnonzero(np.isin(corpus.class_group_C, [
      groups.index(d) for d in domains])).astype(np.int32)
               for domains in CLINC_SPLIT)


def model_inputs(corpus, input_kind, max_length):
  """(ids_NxL of `max_length` or the longest, num_rows); ConfigError
  saying how many examples a shorter `max_length` would truncate."""
  if input_kind == "words":
    ids_NxL, lengths_N = corpus.word_ids_NxL, corpus.word_lengths_N
    num_rows, unit = len(corpus.vocab_V), "tokens"
  else:
    ids_NxL, lengths_N = corpus.ngram_ids_NxL, corpus.ngram_lengths_N
    num_rows, unit = int(corpus.ngram_ids_NxL.max()) + 1, "character n-grams"
  longest = ids_NxL.shape[1]
  if max_length and max_length < longest:
    cut = int(np.sum(lengths_N > max_length))
    raise ConfigError(
        f"config field 'task.max_length': {max_length} {unit} would truncate "
        f"{cut} of {len(lengths_N)} examples (the longest has {longest}); "
        f"expected 0 or at least {longest}")
  if max_length > longest:
    ids_NxL = np.pad(ids_NxL, ((0, 0), (0, max_length - longest)))
  return ids_NxL, num_rows


def train_idf(corpus, name, ids_NxL, num_rows):
  """`vocab.idf` of each id over the meta-train classes' examples only (the
  validation and meta-test texts are never counted)."""
  ids_CxMxL = ids_NxL.reshape(corpus.num_classes, corpus.per_class, -1)
  train_ids = ids_CxMxL[split_classes(corpus, name)[0]]
  return vocab.idf(train_ids.reshape(-1, ids_NxL.shape[1]), num_rows)


def make_splits(corpus, name, ids_NxL):
  """`TextTasks` of the train, val and test classes."""
  ids_CxMxL = ids_NxL.reshape(corpus.num_classes, corpus.per_class, -1)
  return tuple(TextTasks(jnp.asarray(ids_CxMxL[c]), jnp.asarray(c))
               for c in split_classes(corpus, name))


def build(config, formulations: Formulations) -> Problem:
  """The text problem; raises ConfigError before compiling on bad input."""
  task = config.task
  model_configs.require(config.model, TEXT_MODELS, task.NAME)
  try:
    corpus = _corpus(task.NAME, task.data_dir, task.min_count, task.ngram,
                     task.num_buckets)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f"config field 'task.data_dir' ({task.NAME}): {e}"
                      ) from None
  ids_NxL, num_rows = model_inputs(corpus, config.model.INPUT,
                                   task.max_length)
  train, val, test = make_splits(corpus, task.NAME, ids_NxL)
  try:
    sampler = make_task_sampler(train, task.ways, task.shots, task.queries,
                                config.outer.meta_batch_size)
    for split_name, split in (("val", val), ("test", test)):
      check_task_shape(split, 1, task.ways, task.shots, task.eval_queries,
                       name=f"{split_name} split")
  except ValueError as e:
    raise ConfigError(f"{task.NAME} tasks (task.ways={task.ways}, task.shots="
                      f"{task.shots}, task.queries={task.queries}, "
                      f"task.eval_queries={task.eval_queries}): {e}") from None
  vectors_VxD, found_V = None, np.ones(num_rows, bool)
  if config.model.INPUT == "words":
    try:
      vectors_VxD, found_V = load_vectors(corpus.vocab_V,
                                          task.data_dir or None)
    except (FileNotFoundError, ValueError) as e:
      raise ConfigError(f"config field 'model' ({config.model.NAME} needs "
                        f"GloVe vectors; model='text_ngram' does not): {e}"
                        ) from None
  weights_V = None
  if getattr(config.model, "weighting", "none") != "none":
    weights_V = train_idf(corpus, task.NAME, ids_NxL, num_rows) * found_V
  model = model_configs.build_text(config.model, task.ways, num_rows,
                                   vectors_VxD, weights_V)
  splits = {"train": train, "val": val, "test": test}

  def eval_tasks(split="test", num_tasks=None):
    num_tasks = num_tasks or config.eval.num_tasks
    tasks = sample_tasks(splits[split], jax.random.key(config.eval.seed),
                         num_tasks, task.ways, task.shots, task.eval_queries)
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

  length = ids_NxL.shape[1]
  return Problem(
      kind="classification", model=model,
      init_params=lambda key: model.init(key, jnp.ones((1, length),
                                                       jnp.int32)),
      **losses.classification_fns(model.apply), train_sampler=sampler,
      evaluate=evaluate, eval_tasks=eval_tasks, formulations=formulations,
      num_classes=task.ways)


HUFFPOST = TaskDomain(name="huffpost", config_class=HuffpostConfig,
                      build=build)
CLINC150 = TaskDomain(name="clinc150", config_class=Clinc150Config,
                      build=build)
