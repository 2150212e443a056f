"""Pure `jnp` functions: activations (incl. sparsemax), losses, initializers, regularizers and
gradient checking. Import the modules (`from dl.ops import losses`) or the names below."""

from dl.ops import activations, initializers, losses, regularizers
from dl.ops.activations import ACTIVATIONS, get_activation, log_softmax, softmax
from dl.ops.gradcheck import assert_gradcheck, gradcheck
from dl.ops.initializers import INITIALIZERS, get_initializer
from dl.ops.losses import LOSSES, get_loss
from dl.ops.sparsemax import sparsemax, sparsemax_loss, sparsemax_threshold

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "activations",
    "assert_gradcheck",
    "get_activation",
    "get_initializer",
    "get_loss",
    "gradcheck",
    "initializers",
    "log_softmax",
    "losses",
    "regularizers",
    "softmax",
    "sparsemax",
    "sparsemax_loss",
    "sparsemax_threshold",
]
