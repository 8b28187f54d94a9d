"""Matching Networks (Vinyals et al. 2016): attention over the support set.

No inner loop. The model's body embeds the support inputs (g) and the query
inputs (f); each query attends over the support with a softmax of cosine
similarities, and its class distribution is the attention mass on each
class:

  a(x^, x_i) = softmax_i c(f(x^), g(x_i))
  P(y = c | x^) = sum_{i: y_i = c} a(x^, x_i)

and the meta-loss is -log P of the true class, averaged over the queries.
The cosine normalises only the support embeddings, c(f, g_i) = f . g_i /
|g_i|, as the reference implementation does: normalising the query too
(a true cosine) bounds the logits to [-1, 1], so the attention can never be
sharp, a known reproduction error. Here the query embedding's norm acts as
a learned inverse temperature.

Full-context embeddings (`algorithm.fce`, the paper's appendix A): g(x_i, S)
= g'(x_i) + the forward and backward outputs of a bidirectional LSTM run
over the support embeddings g'(x_1..x_S), in the support's order; f(x^, S)
is K = `algorithm.read_steps` steps of an LSTM whose input is f'(x^) and
whose recurrent input is [h_{k-1}, r_{k-1}], with r_{k-1} = sum_i
softmax_i(h_{k-1} . g(x_i, S)) g(x_i, S), h_k = LSTM output + f'(x^),
h_0 = f'(x^) (so K = 0 gives f = f'), c_0 = 0. Both are `lax.scan`s; their
parameters are meta-parameters beside the model's:
`{"params": model_params, "fce": {"forward", "backward", "read"}}`.

Classification only. The embedding is `problem.embed_fn` when the problem
sets one, else the input of the model's head (`algorithm.head`), as for
ProtoNets. Config: `algorithm.head`, `algorithm.fce`, `algorithm.read_steps`;
the `inner` section must keep its defaults (there is no inner loop).
"""
import dataclasses
import math

import jax
from jax import lax
import jax.numpy as jnp

from metajax.algorithms._direct import (
    direct_meta_grad, embedded_task, evaluate_directly)
from metajax.algorithms._partition import HeadConfig, _modules
from metajax.algorithms.base import Algorithm, require_default_inner
from metajax.algorithms.protonet import embedding_fn
from metajax.core.types import TaskBatch
from metajax.settings import ConfigError, non_negative_int, setting

SUPPORT_NORM_FLOOR = 1e-10  # |g_i|^2 floor: an all-zero embedding stays finite
# The trainer draws the model's initialisation from key(run.seed); the FCE
# LSTMs take this stream of their own from the same seed.
FCE_INIT_STREAM = 0x4643


@dataclasses.dataclass(frozen=True)
class MatchingConfig(HeadConfig):
  """Matching Networks' `algorithm` section."""
  NAME = "matching"
  fce: bool = setting(False, "full-context embeddings: a bidirectional LSTM "
                      "over the support, an attention LSTM reading it per "
                      "query")
  read_steps: int = setting(1, "fce: the attention LSTM's read steps K (0: "
                            "the query keeps the body's embedding)",
                            check=non_negative_int)

  def check(self):
    default = MatchingConfig().read_steps
    if not self.fce and self.read_steps != default:
      raise ConfigError(
          f"config field 'algorithm.read_steps': only full-context "
          f"embeddings read the support; set algorithm.fce=true or leave it "
          f"at {default}, got {self.read_steps}")


# ----------------------------------------------------------- the attention
def cosine_logits(query_QxD, support_SxD):
  """c(f, g_i) = f . g_i / |g_i|, shape `(Q, S)`: only the support side is
  normalised, so scaling the query sharpens the attention."""
  inv_norm_S = lax.rsqrt(jnp.maximum(
      jnp.sum(jnp.square(support_SxD), axis=-1), SUPPORT_NORM_FLOOR))
  return (query_QxD @ support_SxD.T) * inv_norm_S[None, :]


def attention_weights(query_QxD, support_SxD):
  """a(x^, x_i): softmax over the support of `cosine_logits`, `(Q, S)`."""
  return jax.nn.softmax(cosine_logits(query_QxD, support_SxD), axis=-1)


def class_log_probs(query_QxD, support_SxD, labels_S, num_ways: int):
  """log P(y = c | x^) = log sum_{i: y_i = c} a(x^, x_i), shape `(Q, N)`
  (a log-sum-exp over each class's attention logits, stable in float32)."""
  log_a_QxS = jax.nn.log_softmax(cosine_logits(query_QxD, support_SxD),
                                 axis=-1)
  one_hot_1xSxN = jax.nn.one_hot(labels_S, num_ways,
                                 dtype=log_a_QxS.dtype)[None]
  return jax.nn.logsumexp(log_a_QxS[:, :, None], axis=1, b=one_hot_1xSxN)


# ------------------------------------------------- full-context embeddings
def lstm_step(params, c_D, inputs):
  """The standard LSTM step: `(c, h)` from the cell `c_D` and `inputs`, the
  concatenated input and recurrent input."""
  gates = inputs @ params["kernel"] + params["bias"]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c_D = jax.nn.sigmoid(f) * c_D + jax.nn.sigmoid(i) * jnp.tanh(g)
  return c_D, jax.nn.sigmoid(o) * jnp.tanh(c_D)


def init_fce(key, dim: int) -> dict:
  """Params of the support's bidirectional LSTM ("forward", "backward") and
  the query's read LSTM ("read") for embeddings of width `dim`: each LSTM's
  `kernel` maps `[input, recurrent input]` to its four gates (LeCun-normal:
  unit normal over sqrt(fan-in), one draw for all three) and its `bias` is
  zero."""
  fan_ins = {"forward": 2 * dim, "backward": 2 * dim, "read": 3 * dim}
  normal = jax.random.normal(key, (sum(fan_ins.values()), 4 * dim))
  params, start = {}, 0
  for name, fan_in in fan_ins.items():
    params[name] = {"kernel": normal[start:start + fan_in] / math.sqrt(fan_in),
                    "bias": jnp.zeros((4 * dim,))}
    start += fan_in
  return params


def _lstm_outputs(params, x_SxD):
  """The LSTM's output at each position of the sequence `x_SxD`."""
  def step(carry, x_D):
    c_D, h_D = lstm_step(params, carry[0], jnp.concatenate([x_D, carry[1]]))
    return (c_D, h_D), h_D
  zeros_D = jnp.zeros(x_SxD.shape[-1:], x_SxD.dtype)
  return lax.scan(step, (zeros_D, zeros_D), x_SxD)[1]


def support_in_context(fce, g_SxD):
  """g(x_i, S) = g'(x_i) + forward LSTM output + backward LSTM output."""
  backward_SxD = _lstm_outputs(fce["backward"], g_SxD[::-1])[::-1]
  return g_SxD + _lstm_outputs(fce["forward"], g_SxD) + backward_SxD


def query_in_context(fce, f_QxD, g_SxD, read_steps: int):
  """f(x^, S): `read_steps` attention-LSTM reads of g(S) per query."""
  def one_query(f_D):
    def step(carry, _):
      c_D, h_D = carry
      r_D = jax.nn.softmax(g_SxD @ h_D) @ g_SxD
      c_D, h_hat_D = lstm_step(fce["read"], c_D,
                               jnp.concatenate([f_D, h_D, r_D]))
      return (c_D, h_hat_D + f_D), None
    (_, h_D), _ = lax.scan(step, (jnp.zeros_like(f_D), f_D), None,
                           length=read_steps)
    return h_D
  return jax.vmap(one_query)(f_QxD)


def embedding_width(config, model_params) -> int:
  """Width of the default embedding: the input width of the head's kernel."""
  modules = _modules(model_params)
  head = config.algorithm.head or list(modules)[-1]
  return modules[head]["kernel"].shape[0]


def init_meta_params(config, problem, model_params):
  """`{"params": model_params}`, plus the LSTMs' `"fce"` params with
  `algorithm.fce` (drawn from `run.seed`'s own stream)."""
  del problem
  meta = {"params": model_params}
  if config.algorithm.fce:
    key = jax.random.fold_in(jax.random.key(config.run.seed), FCE_INIT_STREAM)
    meta["fce"] = init_fce(key, embedding_width(config, model_params))
  return meta


# ----------------------------------------------------------------- the task
def task_loss_and_metrics(meta_params, task: TaskBatch, embed_fn,
                          num_ways: int, fce: bool, read_steps: int):
  """Query -log P(true class) and accuracy of one task."""
  g_SxD, labels_S, f_QxD, labels_Q = embedded_task(
      embed_fn, meta_params["params"], task)
  if fce:
    g_SxD = support_in_context(meta_params["fce"], g_SxD)
    f_QxD = query_in_context(meta_params["fce"], f_QxD, g_SxD, read_steps)
  log_p_QxN = class_log_probs(f_QxD, g_SxD, labels_S, num_ways)
  loss = -jnp.mean(jnp.take_along_axis(log_p_QxN, labels_Q[:, None], axis=1))
  accuracy = jnp.mean((jnp.argmax(log_p_QxN, -1) == labels_Q)
                      .astype(jnp.float32))
  return loss, {"post_loss": loss, "post_accuracy": accuracy}


def _scorer(config, problem):
  """`score(meta_params, task) -> (loss, metrics)` for one task."""
  embed_fn = embedding_fn(config, problem)
  settings = config.algorithm
  return lambda meta_params, task: task_loss_and_metrics(
      meta_params, task, embed_fn, problem.num_classes, settings.fce,
      settings.read_steps)


def check(config, problem):
  """ConfigError for inner-loop settings, regression tasks, or (with FCE)
  an embedding whose width the head's input does not give."""
  require_default_inner(config, "matching")
  if problem.kind != "classification":
    raise ConfigError(
        f"config field 'algorithm': matching is for classification tasks, "
        f"and this task is {problem.kind} (it has no classes to attend "
        "to); use e.g. task='omniglot'")
  if config.algorithm.fce:  # the LSTMs are sized from the head's input
    params = jax.eval_shape(problem.init_params, jax.random.key(0))
    x_TxKx = jax.eval_shape(problem.train_sampler,
                            jax.random.key(0)).support[0]
    one_task_x = jax.ShapeDtypeStruct(x_TxKx.shape[1:], x_TxKx.dtype)
    features = jax.eval_shape(embedding_fn(config, problem), params,
                              one_task_x)
    width, expected = math.prod(features.shape[1:]), embedding_width(config,
                                                                     params)
    if width != expected:
      raise ConfigError(
          f"config field 'algorithm.fce': the embedding has width {width} "
          f"but the head's input, which sizes the LSTMs, has {expected}; use "
          "the default embedding (the input of the model's head)")


def make_meta_grad(config, problem):
  """`meta_grad_fn(meta_params, tasks, key, step) -> (grads, metrics)`: the
  gradient of the mean query loss over the vmapped tasks."""
  score = _scorer(config, problem)

  def objective(meta_params, tasks, key):
    del key
    losses_T, metrics_T = jax.vmap(lambda t: score(meta_params, t))(tasks)
    return jnp.mean(losses_T), metrics_T

  return direct_meta_grad(objective)


def evaluate(config, problem, meta_params, split="test", num_tasks=None
             ) -> dict:
  """Query loss and accuracy (95% intervals) on the task's evaluation
  tasks, no adaptation."""
  score = _scorer(config, problem)
  return evaluate_directly(problem, lambda params, task: score(params, task)[1],
                           meta_params, split, num_tasks)


ALGORITHM = Algorithm(
    name="matching", family="metric", config_class=MatchingConfig,
    make_meta_grad=make_meta_grad, check=check,
    init_meta_params=init_meta_params, evaluate=evaluate,
    eval_optimizer=lambda config: "none (attention over the support)")
