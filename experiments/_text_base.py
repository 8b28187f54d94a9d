"""The shared setting of the text experiments (HuffPost, CLINC150).

Not an experiment itself (the leading underscore keeps it out of the list): `text_config(task, shots, algorithm, ...)` gives
the config every `huffpost_*` and `clinc150_*` file starts from. Kim's CNN
over frozen GloVe 100-d vectors, 5 training queries per class, meta-batch
8, Adam 1e-3 annealed on a cosine; MAML-family learners take 5 inner SGD
steps at 0.1 in training and 10 at test. Evaluation: 1,000 episodes from
`eval.seed` on the meta-test classes, 25 queries per class.

`mean_config(...)` is the first CPU-budget setting (docs/text.md): the
mean of the frozen GloVe vectors through one 256-unit ReLU layer
(`text_mean`), 3,000 meta-steps; metric learners (ProtoNets, Matching
Networks) keep the `inner` section at its defaults.

`row_config(...)` is the setting of the table's rows, one of `ENCODERS`
and a number of meta-steps at a constant outer rate (so a shorter run is
exactly a prefix of a longer one), both chosen on the validation classes
by `experiments/analysis/text_select.py`:
  mean: `mean_config`'s encoder;
  idf: the idf-weighted mean of the frozen GloVe vectors (words without a
    vector left out), a residual 256-unit ReLU branch starting at zero, the
    embedding L2-normalised times a learned scale: untrained, it ranks as
    the untrained GloVe nearest-mean baseline does;
  ngram_idf: the same over hashed character 3-grams embedded at random in
    512 dimensions (a random projection of the char 3-gram tf-idf
    baseline's features), the table learned.
The starting scale sets the softmax temperature: ProtoNets' logits are
squared distances (scale 3), the others' dot products or cosines (10).
"""
from metajax.algorithms import get as get_algorithm
from metajax.algorithms.base import InnerConfig
from metajax.models.configs import (
    TextCNNConfig, TextMeanConfig, TextNgramConfig)
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
  if algorithm in ("protonet", "matching", "cnp", "snail"):
    base.update({"inner.steps": InnerConfig().steps,
                 "inner.lr": InnerConfig().lr})
  config = text_config(task, shots, algorithm, ways, num_meta_steps, base)
  return override(config, overrides or {})


ENCODERS = {
    "mean": {"model": TextMeanConfig.NAME, "model.embeddings": "frozen"},
    "idf": {"model": TextMeanConfig.NAME, "model.embeddings": "frozen",
            "model.weighting": "idf", "model.residual": True},
    "ngram_idf": {"model": TextNgramConfig.NAME, "model.dim": 512,
                  "model.hidden_sizes": (256,), "model.weighting": "idf",
                  "model.residual": True},
}


def row_config(task: str, ways: int, shots: int, algorithm: str,
               encoder: str, num_meta_steps: int, overrides: dict = None
               ) -> Config:
  """`mean_config` with one of `ENCODERS` and a constant outer rate."""
  base = {"outer.schedule": "constant", **ENCODERS[encoder]}
  if encoder != "mean":
    base["model.norm_scale"] = 3.0 if algorithm == "protonet" else 10.0
  config = mean_config(task, shots, algorithm, ways, num_meta_steps, base)
  return override(config, overrides or {})
