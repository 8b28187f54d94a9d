"""Sequence learners: causal models of `x_BxTxD -> y_BxTxC` for model-based
meta-learning.

A sequence learner is a Flax module with the fields `num_outputs` (C) and
`max_length` (the longest T it takes; longer inputs raise ValueError),
whose output at position t depends only on the inputs at positions 0..t. A
model-based meta-learner (`metajax.algorithms.snail`) feeds it a task as a
sequence of (embedding, label) support pairs followed by one unlabelled
query and reads the query's prediction at the last position; any module
meeting this contract can take SNAIL's place:

  learner = BACKBONES["snail"](num_outputs=5, max_length=6)
  params = learner.init(key, x_1x6xD)
  y_Bx6x5 = learner.apply(params, x_Bx6xD)

Shipped: `SNAIL` (`metajax.models.snail`) and `LSTM` below (the recurrent
baseline of Santoro et al. 2016's memory-augmented networks, without their
external memory).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.models.snail import SNAIL, check_length


class LSTM(nn.Module):
  """One LSTM layer run by `lax.scan`, then a dense layer per position.

  Causal by construction: the state at t is a function of inputs 0..t.
  The input projections of all positions are one matmul before the scan;
  the scan carries only the recurrent part. The forget gate's bias starts
  at 1 (Jozefowicz et al. 2015), so early training keeps memory.

  Attributes:
    num_outputs: outputs per position.
    max_length: the longest sequence taken.
    hidden_size: LSTM units.
  """
  num_outputs: int
  max_length: int
  hidden_size: int = 200

  @nn.compact
  def __call__(self, x_BxTxD):
    check_length("LSTM", x_BxTxD, self.max_length)
    hidden = self.hidden_size
    input_kernel = self.param("input_kernel", nn.initializers.lecun_normal(),
                              (x_BxTxD.shape[-1], 4 * hidden))
    recurrent_kernel = self.param("recurrent_kernel",
                                  nn.initializers.orthogonal(),
                                  (hidden, 4 * hidden))
    bias = self.param("bias", lstm_bias_init, (4 * hidden,))
    gates_TxBx4H = jnp.swapaxes(
        x_BxTxD @ input_kernel + bias.reshape(1, 1, -1), 0, 1)
    batch = x_BxTxD.shape[0]
    zeros_BxH = jnp.zeros((batch, hidden), gates_TxBx4H.dtype)
    _, h_TxBxH = jax.lax.scan(
        lambda carry, g: lstm_step(carry, g, recurrent_kernel),
        (zeros_BxH, zeros_BxH), gates_TxBx4H)
    return nn.Dense(self.num_outputs, name="output")(
        jnp.swapaxes(h_TxBxH, 0, 1))


def lstm_bias_init(key, shape, dtype=jnp.float32):
  """Zeros, except 1 for the forget gate (gate order: i, f, g, o)."""
  del key
  hidden = shape[0] // 4
  return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)


def lstm_step(carry, gates_Bx4H, recurrent_kernel_Hx4H):
  """One LSTM step: `(h, c), gates from the input -> (h', c'), h'`."""
  h_BxH, c_BxH = carry
  gates_Bx4H = gates_Bx4H + h_BxH @ recurrent_kernel_Hx4H
  i, f, g, o = jnp.split(gates_Bx4H, 4, axis=-1)
  c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
  h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
  return (h_BxH, c_BxH), h_BxH


BACKBONES = {"snail": SNAIL, "lstm": LSTM}
