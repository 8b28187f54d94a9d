"""A multi-layer perceptron with configurable widths and activation."""
import functools
from typing import Callable, Optional, Sequence, Union

import flax.linen as nn
import jax

from metajax.models.kernels import dense_ops

ACTIVATIONS = {
    "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "swish": nn.swish,
    "softplus": nn.softplus, "sigmoid": nn.sigmoid, "identity": lambda x: x,
}


def get_activation(name: str) -> Callable:
  """The activation called `name`; ValueError listing the known ones."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; expected one of "
                     f"{sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class MLP(nn.Module):
  """Dense layers of `hidden_sizes` with `activation`, then a linear output.

  The MAML sine network is `MLP(hidden_sizes=(40, 40), output_size=1)`.
  `init_stddev` set: weights from a truncated normal of that scale and zero
  biases, as in MAML's reference code (0.01); None: Flax's LeCun default.
  `dense` is the layers' product, the same mathematics either way: 'plain'
  (`lax.dot_general`, the portable default), 'fast' (a custom VJP whose
  weight gradient suits XLA:CPU, reverse mode only; `dense_ops`) or a
  `dot_general` function. `metajax.backend.for_backend(...).dense` is the
  choice for a backend.
  """
  hidden_sizes: Sequence[int] = (40, 40)
  output_size: int = 1
  activation: str = "relu"
  init_stddev: Optional[float] = None
  dense: Union[str, Callable] = "plain"

  @nn.compact
  def __call__(self, x_BxD: jax.Array) -> jax.Array:
    act = get_activation(self.activation)
    try:
      dot_general = dense_ops.get_dot_general(self.dense)
    except ValueError as e:
      raise ValueError(f"MLP field 'dense': {e}") from None
    dense = functools.partial(nn.Dense, dot_general=dot_general)
    if self.init_stddev is not None:
      dense = functools.partial(
          dense, kernel_init=nn.initializers.truncated_normal(self.init_stddev))
    h = x_BxD
    for width in self.hidden_sizes:
      h = act(dense(width)(h))
    return dense(self.output_size)(h)
