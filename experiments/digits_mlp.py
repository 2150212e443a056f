"""MLP on scikit-learn's 8x8 digits, side by side with scikit-learn's MLPClassifier.

Run:    python run.py digits_mlp --scale quick
Expect: quick on a 2-core CPU: about 5 s, test accuracy 97.5% (bar >= 97.5%; scikit-learn's
        MLPClassifier 96.9% on the same split).
"""

from __future__ import annotations

import math
import time

import ml_collections

from dl import data, optim
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_least, plots
from dl.train.supervised import fit, init_state

PAPER = {
    "citation": "Rumelhart, Hinton & Williams 1986 (backprop MLP); baseline: scikit-learn "
    "MLPClassifier (Pedregosa et al. 2011)",
    "claim": "A one-hidden-layer MLP trained by backprop classifies handwritten digits well.",
    "published": "no paper number on this split: the anchor is scikit-learn on the same split",
    "bars": {
        "smoke": "none (plumbing only)",
        "quick": "test accuracy >= 97.5% and >= scikit-learn's MLPClassifier",
        "full": "test accuracy >= 97.5% and >= scikit-learn's MLPClassifier",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # init, dropout and data order
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.hidden = (256, 256)  # two hidden layers; wider than sklearn's (100,) but still tiny
    c.activation = "relu"  # hidden units
    c.dropout = 0.2  # digits has ~1.1k training images: regularize
    c.learning_rate = 1e-3  # Adam (Kingma & Ba 2015)
    c.l2 = 1e-4  # weight decay on kernels only
    c.batch_size = 64  # a multiple of 8 so that 8 simulated devices split it evenly
    c.num_epochs = {"smoke": 2, "quick": 60, "full": 150}[scale]  # 17 steps each at batch 64
    c.eval_every_epochs = 1  # validation accuracy each epoch selects the reported params
    c.patience = 0  # evaluations without improvement before stopping; 0 = never
    c.checkpoint_every_epochs = 10  # orbax checkpoints for --resume
    c.sklearn = scale != "smoke"  # also fit scikit-learn's MLPClassifier on the same split
    c.sklearn_max_iter = 200  # scikit-learn's default
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


def sklearn_baseline(splits, seed: int, max_iter: int) -> tuple[float, float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    start = time.perf_counter()
    clf = MLPClassifier(hidden_layer_sizes=(100,), max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(splits["train"].x, splits["train"].y)
    return float(clf.score(splits["test"].x, splits["test"].y)), time.perf_counter() - start


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("digits")
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    steps_per_epoch = loader.steps_per_epoch
    model = MLP(
        hidden=tuple(config.hidden), out=10, activation=config.activation, dropout=config.dropout
    )
    num_steps = config.num_epochs * steps_per_epoch
    tx = optim.adam(config.learning_rate)
    state = init_state(model, tx, train.x[: config.batch_size], seed=config.seed)
    start = time.perf_counter()
    state, history, summary = fit(
        state,
        loss_fn=classifier_loss(model, l2=config.l2),
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 256),
        num_steps=num_steps,
        workdir=workdir,
        eval_every=config.eval_every_epochs * steps_per_epoch,
        patience=config.patience,
        checkpoint_every=config.checkpoint_every_epochs * steps_per_epoch,
        resume=config.get("resume", False),
        progress=config.progress,
        desc="digits_mlp",
    )
    ours_time = time.perf_counter() - start
    test = summary["evaluate"](summary["best_params"], data.eval_batches(splits["test"], 256))
    plots.learning_curves(
        history,
        f"{workdir}/curves.png",
        keys=("loss", "val_loss", "val_accuracy"),
        title="digits MLP",
    )
    metrics = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "best_val_accuracy": summary["best"],
        "best_step": summary["best_step"],
        "train_time_s": ours_time,
        "param_count": summary["param_count"],
    }
    if config.sklearn:
        sk_acc, sk_time = sklearn_baseline(splits, config.seed, config.sklearn_max_iter)
        metrics.update(sklearn_test_accuracy=sk_acc, sklearn_time_s=sk_time)
        metrics["bars"] = [
            at_least("test accuracy", test["accuracy"], 0.975, paper="-"),
            at_least(
                "test accuracy - scikit-learn's",
                test["accuracy"] - sk_acc,
                0.0,
                paper=f"sklearn {sk_acc:.4f}",
            ),
        ]
    for k, v in metrics.items():
        if k != "bars" and isinstance(v, float) and not math.isnan(v):
            print(f"  {k}: {v:.4f}")
    return metrics
