"""Vanishing gradients in a 30-layer MLP on the digits, and what fixes them: ReLU with He
initialization partly, residual connections with layer normalization fully.

Run:    python run.py vanishing_gradients --scale quick
Expect: quick on a 2-core CPU: about 18 s; at initialization the sigmoid net's first-layer
        gradient norm is 6e-19 of its last hidden layer's (float64); test accuracy: sigmoid
        10.3% (chance), ReLU+He 92.2%, residual+LayerNorm (sigmoid) 96.7% (bar >= 95%).

Three nets of 30 hidden layers of width 64, trained identically by the engine
(`dl.train.supervised.fit`, Adam, same seed, same minibatch order):

* sigmoid: plain sigmoid MLP, LeCun-normal init (variance 1/fan_in), the "standard" deep net of
  Glorot & Bengio (2010). sigmoid' <= 1/4, so the backpropagated signal shrinks by roughly a
  constant factor per layer and the first layers' gradients vanish (Hochreiter 1991; Bengio et
  al. 1994). The forward signal fares no better: differences between inputs shrink by the same
  factor, so after 30 layers every image gives the same output (chance accuracy).
* relu_he: ReLU with He-normal init (variance 2/fan_in, He et al. 2015), which keeps the
  activation and gradient variance constant across layers on average.
* residual_layernorm: pre-norm residual blocks x + sigmoid(Dense(LayerNorm(x))) (He et al. 2016;
  Ba et al. 2016), with the SAME sigmoid and LeCun init as the first net, so the architecture is
  the only change: the identity path carries the gradient to every layer unattenuated.

Per-layer gradient norms are the Frobenius norms of each kernel's gradient of the mean training
cross-entropy at initialization (all 1077 training images), computed in float64. Test accuracy
uses the parameters of the best validation epoch (the engine's `best_params`), as in `digits_mlp`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import data, optim
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.ops.losses import cross_entropy
from dl.report import Bar, at_least, at_most, plots
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Hochreiter 1991; Bengio, Simard & Frasconi 1994 (vanishing gradients); Glorot & "
    "Bengio 2010; He et al. 2015 (He init); He et al. 2016 (residual); Ba et al. 2016 "
    "(layer norm)",
    "claim": "In a deep sigmoid net the gradient vanishes toward the input and the net does not "
    "train; ReLU with He init helps; residual connections with layer norm train it.",
    "published": "qualitative (Glorot & Bengio 2010 fig. 7: gradients shrink toward the input)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "residual+LayerNorm test accuracy >= 0.95; plain sigmoid test accuracy < "
        "0.95; sigmoid first/last hidden-layer gradient norm ratio at init <= 1e-3",
        "full": "as quick",
    },
}

# name -> MLP keyword arguments; everything else (width, depth, optimizer, data) is shared.
ARMS: dict[str, dict[str, Any]] = {
    "sigmoid": {"activation": "sigmoid", "kernel_init": "lecun_normal"},
    "relu_he": {"activation": "relu", "kernel_init": "he_normal"},
    "residual_layernorm": {
        "activation": "sigmoid",
        "kernel_init": "lecun_normal",
        "residual": True,
        "norm": "layer",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # init and data order, shared by all arms
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.arms = tuple(ARMS)  # which nets to train (names in ARMS)
    c.depth = 3 if scale == "smoke" else 30  # hidden layers (smoke: plumbing, fast compile)
    c.width = 64  # = the input width, so every residual block has an identity path
    c.learning_rate = 1e-3  # Adam (Kingma & Ba 2015); the same for every arm
    c.batch_size = 64  # 17 steps per epoch on 1077 images
    c.num_epochs = {"smoke": 1, "quick": 30, "full": 100}[scale]  # per arm; no early stop
    c.checkpoint_every_epochs = {"smoke": 0, "quick": 0, "full": 10}[scale]  # 0: none (short runs)
    c.progress = scale != "smoke"  # progress bars (off in the smoke tests)
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "arms": Tuple(Choice(ARMS)),
    "depth": Int(lo=1),
    "width": Int(64, 64),  # the residual blocks' identity path needs width = input width
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "progress": Bool(),
}


def build(config: ml_collections.ConfigDict, arm: str) -> MLP:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")
    return MLP(hidden=(config.width,) * config.depth, out=10, **ARMS[arm])


def layer_grad_norms(model: MLP, params: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Frobenius norm of d(mean cross-entropy)/d(kernel) for every Dense layer, input to output.

    Computed in float64 (`jax.enable_x64`): the deep sigmoid net's first-layer gradients are
    below float32's smallest normal number and would read as exactly 0.
    x: [n, in]; y: [n] int labels. Returns [depth + 1]: dense_0 ... dense_{depth-1}, then head.
    """
    # Every array below is float64; standard promotion is only for flax's LayerNorm, which
    # promotes its statistics' dtype with float32 (rejected by strict mode for float64 inputs).
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y)

        def loss(p):
            return cross_entropy(logits=model.apply({"params": p}, x), targets=y)

        grads = jax.jit(jax.grad(loss))(params)  # one compile instead of op-by-op f64 dispatch
        names = [f"dense_{i}" for i in range(len(model.hidden))] + ["head"]
        return np.array([float(jnp.linalg.norm(grads[n]["kernel"])) for n in names])


def train_arm(config, arm: str, splits, workdir: str) -> dict[str, Any]:
    model = build(config, arm)
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    spe = loader.steps_per_epoch
    state = init_state(
        model, optim.adam(config.learning_rate), train.x[: config.batch_size], seed=config.seed
    )
    norms = layer_grad_norms(model, state.params, train.x, train.y)
    sub = os.path.join(workdir, arm)
    os.makedirs(sub, exist_ok=True)
    _, history, summary = fit(
        state,
        loss_fn=classifier_loss(model),
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 360),
        num_steps=config.num_epochs * spe,
        workdir=sub,
        eval_every=spe,
        checkpoint_every=config.checkpoint_every_epochs * spe,
        resume=config.get("resume", False),
        progress=config.progress,
        desc=f"vanishing_gradients {arm}",
    )
    test = summary["evaluate"](summary["best_params"], data.eval_batches(splits["test"], 360))
    val_rows = [r for r in history if "val_accuracy" in r]
    return {
        "grad_norms": norms,
        "test_accuracy": test["accuracy"],
        "best_val_accuracy": summary["best"],
        "best_epoch": summary["best_step"] / spe,
        "epochs": [r["step"] / spe for r in val_rows],
        "val_accuracy": [r["val_accuracy"] for r in val_rows],
        "final_train_loss": next(r["loss"] for r in reversed(history) if "loss" in r),
        "param_count": summary["param_count"],
        "train_time_s": summary["wall_time_s"],
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("digits")
    results = {arm: train_arm(config, arm, splits, workdir) for arm in config.arms}
    layers = np.arange(1, config.depth + 2)  # the head is layer depth + 1
    plots.curves(
        {arm: (layers, r["grad_norms"]) for arm, r in results.items()},
        f"{workdir}/grad_norms.png",
        xlabel="layer (1 = input side; last = head)",
        ylabel="||dL/dW|| at initialization",
        logy=True,
        title=f"{config.depth}-layer MLPs on digits: per-layer gradient norm",
    )
    plots.curves(
        {arm: (r["epochs"], r["val_accuracy"]) for arm, r in results.items()},
        f"{workdir}/val_accuracy.png",
        xlabel="epoch",
        ylabel="validation accuracy",
        title=f"{config.depth}-layer MLPs on digits",
    )
    metrics: dict[str, Any] = {}
    for arm, r in results.items():
        g = r["grad_norms"]
        metrics[f"{arm}_test_accuracy"] = r["test_accuracy"]
        metrics[f"{arm}_best_val_accuracy"] = r["best_val_accuracy"]
        metrics[f"{arm}_final_train_loss"] = r["final_train_loss"]
        # First hidden layer vs last hidden layer: how much the gradient shrinks on its way down.
        metrics[f"{arm}_grad_ratio_first_last"] = float(g[0] / g[config.depth - 1])
        metrics[f"{arm}_train_time_s"] = r["train_time_s"]
    metrics["table"] = [
        {
            "arm": arm,
            "mlp": ARMS[arm],
            "test_accuracy": r["test_accuracy"],
            "best_val_accuracy": r["best_val_accuracy"],
            "best_epoch": r["best_epoch"],
            "grad_norm_layer1": float(r["grad_norms"][0]),
            "grad_norm_layer_last_hidden": float(r["grad_norms"][config.depth - 1]),
            "param_count": r["param_count"],
        }
        for arm, r in results.items()
    ]
    metrics["grad_norms"] = {arm: r["grad_norms"].tolist() for arm, r in results.items()}
    bars = []
    if "residual_layernorm" in results:
        bars.append(
            at_least(
                "residual+LayerNorm (sigmoid) test accuracy",
                results["residual_layernorm"]["test_accuracy"],
                0.95,
                paper="trains (He et al. 2016)",
            )
        )
    if "sigmoid" in results:
        acc = results["sigmoid"]["test_accuracy"]
        bars.append(
            Bar(
                "plain sigmoid test accuracy",
                acc,
                "< 0.95",
                bool(acc < 0.95),
                "does not train (Glorot & Bengio 2010)",
            )
        )
        bars.append(
            at_most(
                f"sigmoid grad norm ratio, layer 1 / layer {config.depth}, at init",
                metrics["sigmoid_grad_ratio_first_last"],
                1e-3,
                paper="vanishes (Bengio et al. 1994)",
            )
        )
    metrics["bars"] = bars
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isnan(v):
            print(f"  {k}: {v:.4g}")
    return metrics
