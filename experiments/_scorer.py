"""The MNIST scorer shared by the generative experiments: `dl.models.cnn.MnistCNN` trained once
per (scale, data) with the engine (`fit`), saved with `dl.train.checkpoint` (orbax) and restored
by every later run, for label accuracy of generated digits and "MNIST FID" on its penultimate
features (`dl.eval.frechet`).

Cache: `<root>/<scale>-<key>/scorer`, where `root` is the experiment's `scorer_dir` config field
or, by default, `<workdir>/../../_mnist_scorer` (the runner's workdirs are `runs/<name>/<scale>`,
so every experiment shares `runs/_mnist_scorer`), and `key` hashes the scorer's settings and a
checksum of the training images, so a scorer is never reused on other data or settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from typing import Any

import jax
import numpy as np

from dl import data, optim
from dl.models.cnn import MnistCNN
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.train.checkpoint import Checkpointer
from dl.train.supervised import fit, init_state

# Per scale: MnistCNN widths and its training. Quick: 1 epoch of the narrow net (about 98-99%
# test accuracy in about 20 CPU-s); full: the tutorial's widths, 3 epochs (about 99.2%).
SETTINGS = {
    "smoke": {"channels": (4, 8), "hidden": 16, "epochs": 1, "max_steps": 4, "batch": 16},
    "quick": {"channels": (8, 16), "hidden": 128, "epochs": 1, "max_steps": 0, "batch": 128},
    "full": {"channels": (32, 64), "hidden": 1024, "epochs": 3, "max_steps": 0, "batch": 128},
}
LEARNING_RATE = 1e-3  # Adam
SEED = 0  # the scorer's own seed: independent of the experiment's


class Scorer:
    """A trained MnistCNN. `predict(x)` / `features(x)` take images [n, 28, 28, 1] in [0, 1]
    and return classes [n] / penultimate features [n, hidden] as numpy (jitted once)."""

    def __init__(
        self,
        model: MnistCNN,
        variables: dict[str, Any],
        *,
        test_accuracy: float,
        trained_now: bool,
        directory: str,
    ):
        self.model, self.variables = model, variables
        self.test_accuracy = test_accuracy
        self.trained_now = trained_now  # False when restored from the cache
        self.directory = directory
        self._predict = jax.jit(lambda v, x: model.apply(v, x).argmax(-1))
        self._features = jax.jit(lambda v, x: model.apply(v, x, method="features"))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.variables, x))

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._features(self.variables, x))


def cache_dir(root: str, scale: str, train: data.ArrayData) -> str:
    """`<root>/<scale>-<key>` (module docstring)."""
    s = SETTINGS[scale]
    crc = zlib.crc32(np.ascontiguousarray(train.x).view(np.uint8).reshape(-1))
    crc = zlib.crc32(np.ascontiguousarray(train.y).view(np.uint8).reshape(-1), crc)
    text = json.dumps({**s, "lr": LEARNING_RATE, "seed": SEED, "n": len(train.x), "crc": crc})
    return os.path.join(root, f"{scale}-{hashlib.sha256(text.encode()).hexdigest()[:10]}")


def default_root(workdir: str) -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(workdir))), "_mnist_scorer")


def get_scorer(
    splits: dict[str, data.ArrayData], *, scale: str, root: str, progress: bool = False
) -> Scorer:
    """The cached scorer for `scale` and `splits["train"]`, trained (and cached) if absent.

    splits: `dl.data.load("mnist", flatten=False)` ({"train", "val", "test"}, x in [0, 1])."""
    s = SETTINGS[scale]
    model = MnistCNN(channels=tuple(s["channels"]), hidden=s["hidden"])
    train = splits["train"]
    directory = cache_dir(root, scale, train)
    os.makedirs(directory, exist_ok=True)
    loader = data.Loader(train, s["batch"], seed=SEED)
    state = init_state(model, optim.adam(LEARNING_RATE), train.x[: s["batch"]], seed=SEED)
    ckpt = Checkpointer(os.path.join(directory, "scorer"))
    template = {"params": state.params, "extra": state.extra}
    if ckpt.latest_step() is not None:
        restored = ckpt.restore_latest(template)
        if restored is not None:
            tree, meta, _ = restored
            ckpt.close()
            variables = {"params": tree["params"], **tree["extra"]}
            return Scorer(
                model,
                variables,
                test_accuracy=float(meta["test_accuracy"]),
                trained_now=False,
                directory=directory,
            )
    num_steps = s["epochs"] * loader.steps_per_epoch
    if s["max_steps"]:
        num_steps = min(num_steps, s["max_steps"])
    os.makedirs(os.path.join(directory, "train"), exist_ok=True)
    state, _, summary = fit(
        state,
        loss_fn=classifier_loss(model),
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 1000),
        num_steps=num_steps,
        workdir=os.path.join(directory, "train"),
        eval_every=num_steps,
        progress=progress,
        desc="mnist scorer",
    )
    params = jax.device_get(summary["best_params"])
    extra = jax.device_get(state.extra)
    test = summary["evaluate"](summary["best_params"], data.eval_batches(splits["test"], 1000))
    acc = float(test["accuracy"])
    ckpt.save(0, {"params": params, "extra": extra}, {"test_accuracy": acc, "settings": s})
    ckpt.close()
    variables = {"params": params, **extra}
    return Scorer(model, variables, test_accuracy=acc, trained_now=True, directory=directory)
