"""Conditional Neural Processes (Garnelo et al. 2018) and the attentive
variant (Kim et al. 2019): a network that reads the support set.

No inner loop and no gradient at test time: the neural process
(`metajax.models.neural_process`) encodes each support pair, aggregates the
codes (`algorithm.variant`: "cnp", the mean; "anp", multi-head
cross-attention from each query input) and decodes each query's output
distribution; the meta-loss is the query negative log-likelihood.

- Regression (sine, linear): the neural process replaces the task's MLP
  (the `model` section is unused): it reads raw `(x, y)` pairs and predicts
  N(mu, sigma^2) per query point, sigma = 0.1 + 0.9 softplus(.). Meta-params
  `{"np": ...}`. With `algorithm.min_context` > 0 each training task keeps
  only its first n support points, n uniform in [min_context, K] (the
  papers' random context sizes; the points are i.i.d., so the first n are a
  random subset), through the aggregation's mask. Evaluation: query MSE of
  the predicted mean and the Gaussian NLL for each of `task.eval_shots`.
- Classification (Omniglot): the model's body embeds the images (the input
  of its head, `algorithm.head`, as for ProtoNets) and the neural process
  reads (embedding, one-hot label) pairs. The CNP aggregates per class:
  the label picks the class, r_c is the mean of the codes of class c's
  embeddings, and one decoder scores each r_c against the query embedding,
  logit_c = g([r_c, e(x)]). (A mean over all pairs would leave the decoder
  to untangle which class each part of one code came from; codes of the
  embedding alone and one scorer for every class make relabelling the
  classes permute the logits.) The ANP encodes [embedding, one-hot label],
  attends from the query embedding over all pairs and decodes the logits
  from its read. Meta-params `{"body": model_params, "np": ...}`, trained
  together. Evaluation: query cross-entropy and accuracy.

The neural process's initialisation comes from `run.seed` (a key stream of
its own beside the model's). The `inner` section must keep its defaults.
Kim et al.'s latent path (and its ELBO) and self-attention over the context
are not implemented: "anp" is their deterministic, cross-attention path.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from metajax.algorithms._direct import (
    direct_meta_grad, embedded_task, evaluate_directly, query_record)
from metajax.algorithms._partition import HeadConfig, _modules
from metajax.algorithms.base import Algorithm, require_default_inner
from metajax.algorithms.protonet import embedding_fn
from metajax.models.neural_process import (
    CategoricalDecoder, ClassScoreDecoder, GaussianDecoder, NeuralProcess,
    gaussian_nll)
from metajax.settings import (
    ConfigError, non_negative_int, non_negative_ints, positive_int,
    positive_ints, setting)

# The trainer draws the model's initialisation from key(run.seed); the
# neural process takes this stream of its own from the same seed.
NP_INIT_STREAM = 0x4E50


@dataclasses.dataclass(frozen=True)
class CnpConfig(HeadConfig):
  """The neural processes' `algorithm` section."""
  NAME = "cnp"
  variant: str = setting("cnp", "cnp: mean of the support codes; anp: "
                         "multi-head cross-attention from each query",
                         choices=("cnp", "anp"))
  encoder_sizes: tuple[int, ...] = setting(
      (128, 128, 128, 128), "encoder MLP widths (the last is the code's)",
      check=positive_ints)
  decoder_sizes: tuple[int, ...] = setting(
      (128, 128), "decoder hidden widths (its output layer is added)",
      check=non_negative_ints)
  heads: int = setting(8, "anp: attention heads (they split the code)",
                       check=positive_int)
  key_sizes: tuple[int, ...] = setting(
      (128, 128), "anp: widths of the MLP that maps query and support "
      "inputs to attention keys", check=positive_ints)
  min_context: int = setting(
      0, "regression training: keep a uniform random number >= this of "
      "each task's support points (0: all)", check=non_negative_int)

  def check(self):
    defaults = CnpConfig()
    if self.variant == "cnp":
      for name in ("heads", "key_sizes"):
        if getattr(self, name) != getattr(defaults, name):
          raise ConfigError(
              f"config field 'algorithm.{name}': only variant 'anp' attends;"
              f" set algorithm.variant=anp or leave it at "
              f"{getattr(defaults, name)!r}, got {getattr(self, name)!r}")
    elif self.encoder_sizes[-1] % self.heads:
      raise ConfigError(
          f"config field 'algorithm.heads': the heads split the code, so "
          f"they must divide its width algorithm.encoder_sizes[-1] = "
          f"{self.encoder_sizes[-1]}; got {self.heads}")




def io_widths(config, problem, model_params) -> tuple:
  """`(x width, y width)` the neural process reads: regression, the MLP's
  input and output widths (from its params); classification, the width of
  the embedding before the head (`algorithm.head`, traced on one task's
  support inputs, whatever the encoder's layers) and the classes."""
  if problem.kind == "regression":
    modules = _modules(model_params)
    names = list(modules)
    return (modules[names[0]]["kernel"].shape[0],
            modules[names[-1]]["kernel"].shape[-1])
  x_TxKx = jax.eval_shape(problem.train_sampler,
                          jax.random.key(0)).support[0]
  one_task_x = jax.ShapeDtypeStruct(x_TxKx.shape[1:], x_TxKx.dtype)
  features = jax.eval_shape(embedding_fn(config, problem), model_params,
                            one_task_x)
  return math.prod(features.shape[1:]), problem.num_classes


def build_model(config, kind: str, y_width: int) -> NeuralProcess:
  """The neural process `config.algorithm` describes for a `kind` task;
  `y_width`: the output dimensions (regression) or classes."""
  settings = config.algorithm
  attends = settings.variant == "anp"
  per_class = kind == "classification" and not attends
  if kind == "regression":
    decoder = GaussianDecoder(settings.decoder_sizes, y_dim=y_width)
  elif per_class:
    decoder = ClassScoreDecoder(settings.decoder_sizes)
  else:
    decoder = CategoricalDecoder(settings.decoder_sizes, num_classes=y_width)
  return NeuralProcess(decoder=decoder, encoder_sizes=settings.encoder_sizes,
                       num_heads=settings.heads if attends else 0,
                       key_sizes=settings.key_sizes, per_class=per_class)


def init_np_params(config, kind: str, x_width: int, y_width: int, key):
  """The neural process's params for a `kind` task with inputs and outputs
  of these widths."""
  x_1xX, y_1xY = jnp.zeros((1, x_width)), jnp.zeros((1, y_width))
  return jax.jit(build_model(config, kind, y_width).init)(
      key, x_1xX, y_1xY, jnp.ones((1,)), x_1xX)


def init_meta_params(config, problem, model_params):
  """`{"np": ...}` (regression) or `{"body": model_params, "np": ...}`
  (classification), the process drawn from `run.seed`'s own stream."""
  key = jax.random.fold_in(jax.random.key(config.run.seed), NP_INIT_STREAM)
  kind = problem.kind
  meta = {"np": init_np_params(config, kind,
                               *io_widths(config, problem, model_params),
                               key)}
  if kind == "classification":
    meta["body"] = model_params
  return meta


def context_mask(key, size: int, min_context: int):
  """1 for the support points a training task keeps: the first n, n
  uniform in [min_context, size]; all of them when `min_context` is 0 or
  `key` is None (evaluation)."""
  if key is None or not min_context:
    return jnp.ones((size,))
  count = jax.random.randint(key, (), min_context, size + 1)
  return (jnp.arange(size) < count).astype(jnp.float32)


def _scorer(config, problem):
  """`score(meta_params, task, key) -> (loss, metrics)` for one task."""
  if problem.kind == "regression":
    y_width = jax.eval_shape(problem.train_sampler,
                             jax.random.key(0)).support[1].shape[-1]
    model = build_model(config, "regression", y_width)

    def score(meta_params, task, key):
      (x_SxX, y_SxY), (x_QxX, y_QxY) = task.support, task.query
      mask_S = context_mask(key, x_SxX.shape[0], config.algorithm.min_context)
      mu_QxY, sigma_QxY = model.apply(meta_params["np"], x_SxX, y_SxY,
                                      mask_S.astype(x_SxX.dtype), x_QxX)
      nll = gaussian_nll(mu_QxY, sigma_QxY, y_QxY)
      return nll, {"post_loss": nll,
                   "post_mse": jnp.mean(jnp.square(mu_QxY - y_QxY))}
    return score

  embed_fn, num_ways = embedding_fn(config, problem), problem.num_classes
  model = build_model(config, "classification", num_ways)

  def score(meta_params, task, key):
    del key
    e_SxD, labels_S, e_QxD, labels_Q = embedded_task(
        embed_fn, meta_params["body"], task)
    y_SxN = jax.nn.one_hot(labels_S, num_ways, dtype=e_SxD.dtype)
    logits_QxN = model.apply(meta_params["np"], e_SxD, y_SxN,
                             jnp.ones(labels_S.shape, e_SxD.dtype), e_QxD)
    return query_record(logits_QxN, labels_Q)
  return score


def check(config, problem):
  """ConfigError for inner-loop settings, a problem that is neither
  regression nor classification, `algorithm.min_context` it cannot honour,
  or input widths the model's params do not give."""
  require_default_inner(config, "cnp")
  kind = problem.kind
  if kind not in ("regression", "classification"):
    raise ConfigError(
        f"config field 'task': cnp reads regression or classification "
        f"tasks, and {config.task.NAME} is {kind}")
  tasks = jax.eval_shape(problem.train_sampler, jax.random.key(0))
  params = jax.eval_shape(problem.init_params, jax.random.key(0))
  if kind == "classification":
    if config.algorithm.min_context:
      raise ConfigError(
          f"config field 'algorithm.min_context': classification keeps every "
          f"support example (each class needs its own); expected 0, got "
          f"{config.algorithm.min_context}")
    io_widths(config, problem, params)  # traces the embedding: head errors
    return
  support_x, support_y = tasks.support
  if config.algorithm.min_context > support_x.shape[1]:
    raise ConfigError(
        f"config field 'algorithm.min_context': a training task has "
        f"{support_x.shape[1]} support points; expected at most that, got "
        f"{config.algorithm.min_context}")
  actual = (support_x.shape[-1], support_y.shape[-1])
  widths = io_widths(config, problem, params)
  if widths != actual:
    raise ConfigError(
        f"config field 'model': cnp sizes the neural process from the "
        f"model's params as {widths} (inputs, outputs), but the task gives "
        f"{actual}; use an MLP from the task's inputs to its outputs")


def make_meta_grad(config, problem):
  """`meta_grad_fn(meta_params, tasks, key, step) -> (grads, metrics)`: the
  gradient of the mean query NLL over the vmapped tasks (`key` draws the
  context sizes under `algorithm.min_context`)."""
  score = _scorer(config, problem)

  def objective(meta_params, tasks, key):
    if config.algorithm.min_context:  # a key per task for its context size
      keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
      per_task = jax.vmap(score, in_axes=(None, 0, 0))
    else:
      keys, per_task = None, jax.vmap(score, in_axes=(None, 0, None))
    losses_T, metrics_T = per_task(meta_params, tasks, keys)
    return jnp.mean(losses_T), metrics_T

  return direct_meta_grad(objective)


def evaluate(config, problem, meta_params, split="test", num_tasks=None
             ) -> dict:
  """Every support point read, no adaptation; 95% intervals over the
  evaluation tasks of: regression, query MSE of the predicted mean ("mse")
  and Gaussian NLL ("nll"); classification, query cross-entropy ("loss")
  and accuracy."""
  score = _scorer(config, problem)
  curves = ({"mse": "post_mse", "nll": "post_loss"}
            if problem.kind == "regression" else None)
  return evaluate_directly(
      problem, lambda params, task: score(params, task, None)[1],
      meta_params, split, num_tasks, curves=curves)


ALGORITHM = Algorithm(
    name="cnp", family="model", config_class=CnpConfig,
    make_meta_grad=make_meta_grad, check=check,
    init_meta_params=init_meta_params, evaluate=evaluate,
    eval_optimizer=lambda config: "none (the neural process reads the "
    "support)")
