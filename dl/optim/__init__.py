"""Optimizers from their formulas, learning-rate schedules and gradient clipping (optax shape);
Levenberg-Marquardt for nonlinear least squares;
full-batch L-BFGS to a gradient tolerance; max-norm weight constraints."""

from dl.optim.clipping import clip_by_global_norm, clip_elementwise, global_norm
from dl.optim.constraints import max_norm_projection
from dl.optim.lbfgs import minimize_lbfgs
from dl.optim.least_squares import levenberg_marquardt
from dl.optim.optimizers import (
    OPTIMIZERS,
    adadelta,
    adagrad,
    adam,
    adamax,
    get_optimizer,
    momentum,
    nesterov,
    rmsprop,
    sgd,
)
from dl.optim.schedules import (
    HalveOnRise,
    PlateauFactorState,
    exponential_decay,
    halve_on_rise,
    scale_by_plateau_factor,
    step_decay,
    warmup_cosine,
)

__all__ = [
    "OPTIMIZERS",
    "HalveOnRise",
    "PlateauFactorState",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "clip_by_global_norm",
    "clip_elementwise",
    "exponential_decay",
    "get_optimizer",
    "global_norm",
    "halve_on_rise",
    "levenberg_marquardt",
    "max_norm_projection",
    "minimize_lbfgs",
    "momentum",
    "nesterov",
    "rmsprop",
    "scale_by_plateau_factor",
    "sgd",
    "step_decay",
    "warmup_cosine",
]
