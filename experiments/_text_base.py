"""The shared setting of the text experiments (HuffPost, CLINC150).

Not an experiment itself (the leading underscore keeps it out of the list): `text_config(task, shots, algorithm, ...)` gives
the config every `huffpost_*` and `clinc150_*` file starts from. Kim's CNN
over frozen GloVe 100-d vectors, 5 training queries per class, meta-batch
8, Adam 1e-3 annealed on a cosine; MAML-family learners take 5 inner SGD
steps at 0.1 in training and 10 at test. Evaluation: 1,000 episodes from
`eval.seed` on the meta-test classes, 25 queries per class.

`mean_config(...)` is the setting that beats the untrained baseline on a
CPU budget (docs/text.md): the mean of the frozen GloVe vectors through
one 256-unit ReLU layer (`text_mean`), 3,000 meta-steps; metric learners
(ProtoNets, Matching Networks) keep the `inner` section at its defaults.
"""
from metajax.algorithms import get as get_algorithm
from metajax.algorithms.base import InnerConfig
from metajax.models.configs import TextCNNConfig, TextMeanConfig
from metajax.tasks.base import EvalConfig
from metajax.tasks.text.task import Clinc150Config, HuffpostConfig
from metajax.training.config import Config, OuterConfig, RunConfig, override

TASKS = {"huffpost": HuffpostConfig, "clinc150": Clinc150Config}


def text_config(task: str, shots: int, algorithm: str, ways: int = 5,
                num_meta_steps: int = 1_000, overrides: dict = None) -> Config:
  """The shared text setting for `task` N-way K-shot with `algorithm`;
  `overrides` are dotted config names, as on the command line."""
  config = Config(
      task=TASKS[task](ways=ways, shots=shots, queries=5, eval_queries=25),
      model=TextCNNConfig(embeddings="frozen"),
      algorithm=get_algorithm(algorithm).config_class(),
      inner=InnerConfig(steps=5, lr=0.1),
      outer=OuterConfig(lr=1e-3, meta_batch_size=8,
                        num_meta_steps=num_meta_steps, schedule="cosine"),
      eval=EvalConfig(inner_steps=(10,), num_tasks=1_000, every=0),
      run=RunConfig(log_every=100, checkpoint_every=0))
  return override(config, overrides or {})


def mean_config(task: str, shots: int, algorithm: str, ways: int = 5,
                num_meta_steps: int = 3_000, overrides: dict = None
                ) -> Config:
  """`text_config` with the `text_mean` model; `inner` back at its
  defaults for the algorithms without an inner loop."""
  base = {"model": TextMeanConfig.NAME, "model.embeddings": "frozen"}
  if algorithm in ("protonet", "matching"):
    base.update({"inner.steps": InnerConfig().steps,
                 "inner.lr": InnerConfig().lr})
  config = text_config(task, shots, algorithm, ways, num_meta_steps, base)
  return override(config, overrides or {})
