"""MLP on scikit-learn's 8x8 digits, side by side with scikit-learn's MLPClassifier, 5 seeds each.

Run:    python run.py digits_mlp --scale quick
Expect: quick on a 2-core CPU: about 40 s; mean test accuracy over 5 seeds 97.72 ± 0.30% (bars:
        >= 97.5% and >= scikit-learn's MLPClassifier, 97.28 ± 0.30% over random_state 0..4).

Both sides are means over `num_seeds` seeds (± the sample std over seeds) on the fixed
`data.load("digits")` split: one of the 360 test images is 0.28 points, and scikit-learn alone
spans 96.94-97.78% over random_state 0..4, so one seed of each decides nothing.

Our seeds are one vmapped computation, `dl.train.sweep.train_chunked`: `vmap` over seeds of a
`lax.scan` of the engine's own `train_step`, one jitted program per evaluation interval. Seed s
starts from what `init_state(seed=s)` gives and visits the training set in `data.Loader(seed=s)`
order, so each seed is the single-seed run the engine would make (the tests check this to float
tolerance). train_chunked gives the progress bar, a metrics.jsonl row per seed per evaluation
and checkpoints that `--resume` continues from. The seeds run on one device (a `vmap`, not data
parallel over a mesh).

Which parameters are tested: the bars use each seed's final parameters, as scikit-learn reports
its final model (MLPClassifier's default early_stopping=False), with a rate that decays to 0
(cosine) so that they have settled. Each seed also keeps its best-validation-accuracy
parameters, whose test accuracy is reported beside (quick: 97.17 ± 0.41%; 360 validation images
pick a lucky epoch more than a better net). With a constant rate the final parameters test at
97.50 ± 0.44%.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import data, optim
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.ops.activations import ACTIVATIONS
from dl.optim.schedules import warmup_cosine
from dl.report import at_least, plots
from dl.train import sweep
from dl.train.state import param_count
from experiments._fields import DATA_DIR, SEED, Bool, Check, Choice, Float, Int, Tuple

LR_SCHEDULES = ("constant", "cosine")

PAPER = {
    "citation": "Rumelhart, Hinton & Williams 1986 (backprop MLP); baseline: scikit-learn "
    "MLPClassifier (Pedregosa et al. 2011)",
    "claim": "A one-hidden-layer MLP trained by backprop classifies handwritten digits well.",
    "published": "no paper number on this split: the anchor is scikit-learn on the same split",
    "bars": {
        "smoke": "none (plumbing only)",
        "quick": "mean test accuracy over 5 seeds >= 97.5% and >= scikit-learn's "
        "MLPClassifier's mean over random_state 0..4",
        "full": "mean test accuracy over 5 seeds >= 97.5% and >= scikit-learn's "
        "MLPClassifier's mean over random_state 0..4",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # first seed: ours (init, dropout, data order) and scikit-learn's random_state
    # both run seed, seed + 1, ..., seed + num_seeds - 1
    c.num_seeds = 5  # seeds per side, ours trained at once (vmap); bars compare the means
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.hidden = (256, 256)  # two hidden layers; wider than sklearn's (100,) but still tiny
    c.activation = "relu"  # hidden units
    c.dropout = 0.2  # digits has ~1.1k training images: regularize
    c.learning_rate = 1e-3  # Adam (Kingma & Ba 2015); the peak rate under "cosine"
    c.lr_schedule = "cosine"  # "cosine": decay to 0 over the run (Loshchilov & Hutter 2017), so
    # the final parameters, which the bars report, have settled; "constant": learning_rate
    c.l2 = 1e-4  # weight decay on kernels only
    c.batch_size = 64  # 17 steps per epoch on the 1077 training images
    c.num_epochs = {"smoke": 2, "quick": 60, "full": 150}[scale]  # 17 steps each at batch 64
    c.eval_every_epochs = 1  # validation curves; also picks each seed's best-validation params,
    # whose test accuracy is reported beside the final params' (the bars use the final ones)
    c.checkpoint_every_epochs = 10  # orbax checkpoints for --resume; a multiple of
    # eval_every_epochs (checkpoints fall between the vmapped chunks); 0 = only with --resume
    c.sklearn = scale != "smoke"  # also fit scikit-learn's MLPClassifier (num_seeds times)
    c.sklearn_max_iter = 200  # scikit-learn's default
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "num_seeds": Int(lo=1),
    "data_dir": DATA_DIR,
    "hidden": Tuple(Int(lo=1)),
    "activation": Choice(ACTIVATIONS),
    "dropout": Float(0.0, 1.0, hi_open=True),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "lr_schedule": Choice(LR_SCHEDULES),
    "l2": Float(lo=0.0),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "eval_every_epochs": Int(lo=1),
    "checkpoint_every_epochs": Int(lo=0),
    "sklearn": Bool(),
    "sklearn_max_iter": Int(lo=1),
    "progress": Bool(),
}
CHECKS = [
    Check(
        ("checkpoint_every_epochs", "eval_every_epochs"),
        lambda ckpt, every: ckpt % every == 0,
        "be a multiple of eval_every_epochs (checkpoints fall between the vmapped chunks)",
    )
]


def make_tx(learning_rate, schedule: str, num_steps: int):
    """Adam at `learning_rate` (a float, or a traced scalar inside the sweep) under `schedule`,
    one of `LR_SCHEDULES`, over `num_steps` steps."""
    if schedule == "cosine":
        return optim.adam(warmup_cosine(learning_rate, 0, num_steps))
    if schedule == "constant":
        return optim.adam(learning_rate)
    raise ValueError(f"unknown lr_schedule {schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def sklearn_baseline(splits, seeds, max_iter: int) -> tuple[list[float], float]:
    """Test accuracy of scikit-learn's MLPClassifier (its defaults: one hidden layer of 100 ReLU
    units, Adam, L2 1e-4) for each `random_state` in `seeds`, and the seconds all fits took.

    BLAS runs on one thread: its matrices (batches of 200 x 64 / 100) are too small to split,
    and with threads a fit took 12x longer on a busy 2-core machine (11.5 s vs 0.9 s)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    start = time.perf_counter()
    accuracies = []
    for seed in seeds:
        clf = MLPClassifier(hidden_layer_sizes=(100,), max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(splits["train"].x, splits["train"].y)
        accuracies.append(float(clf.score(splits["test"].x, splits["test"].y)))
    return accuracies, time.perf_counter() - start


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def pm(values) -> str:
    """'97.50 ± 0.30%': mean ± std over seeds of accuracies in [0, 1]."""
    m, s = mean_std(values)
    return f"{100 * m:.2f} ± {100 * s:.2f}%"


def split_evaluator(model: MLP, split: data.ArrayData):
    """A jitted `params (leaves [n, ...]) -> {"loss": [n], "accuracy": [n]}`: each model's mean
    loss and accuracy on the whole `split` (one batch; 360 images)."""
    evaluate = classifier_eval(model)
    batch = {
        "x": jnp.asarray(split.x),
        "y": jnp.asarray(split.y),
        "mask": jnp.ones(len(split.y), jnp.float32),
    }

    @jax.jit
    def fn(params):
        sums = jax.vmap(lambda p: evaluate(p, {}, batch))(params)
        return {"loss": sums["loss"] / sums["count"], "accuracy": sums["accuracy"] / sums["count"]}

    return fn


def seed_schedule(train: data.ArrayData, batch_size: int, seeds):
    """`(start, stop) -> batches` for `train_chunked` (batch_axis=0): leaves [n, stop - start, B,
    ...], seed i's steps start..stop-1 in `data.Loader(train, batch_size, seed=seeds[i])` order."""
    loaders = [data.Loader(train, batch_size, seed=int(s)) for s in seeds]

    def batches(start: int, stop: int):
        per_seed = [
            sweep.stack_batches(lambda t, loader=loader: loader.batch(start + t), stop - start)
            for loader in loaders
        ]
        return jax.tree.map(lambda *a: np.stack(a), *per_seed)

    return batches


def init_seeds(model: MLP, sample_x: np.ndarray, seeds: np.ndarray):
    """What `init_state(model, tx, sample_x, seed=s)` gives each seed s, for all seeds in one
    jitted `lax.map` (one compilation rather than one per seed): (params, leaves [n, ...]; step
    keys [n, 2], the TrainState's rng). The tests check it against `init_state`."""

    def one(seed):
        init_rng, dropout_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed), 3)
        rngs = {"params": init_rng, "dropout": dropout_rng}
        return model.init(rngs, sample_x, train=False)["params"], state_rng

    return jax.jit(lambda s: jax.lax.map(one, s))(jnp.asarray(seeds))


def train_seeds(config: ml_collections.ConfigDict, splits, workdir: str) -> dict:
    """Trains `num_seeds` MLPs as one vmapped `sweep.train_chunked`; seed s is the engine's
    single-seed run (`init_state(seed=s)`, `Loader(seed=s)`, `train_step`). Returns the final
    and each seed's best-validation parameters (leaves [n, ...]), its best step and validation
    accuracy, and the per-evaluation history ({name: [n, evaluations]})."""
    if config.checkpoint_every_epochs % config.eval_every_epochs:
        raise ValueError(
            f"checkpoint_every_epochs={config.checkpoint_every_epochs} must be a multiple of "
            f"eval_every_epochs={config.eval_every_epochs}"
        )
    train = splits["train"]
    seeds = np.arange(config.seed, config.seed + config.num_seeds)
    model = MLP(
        hidden=tuple(config.hidden), out=10, activation=config.activation, dropout=config.dropout
    )
    steps_per_epoch = data.Loader(train, config.batch_size, seed=0).steps_per_epoch
    num_steps = config.num_epochs * steps_per_epoch
    params, step_keys = init_seeds(model, train.x[: config.batch_size], seeds)
    val = split_evaluator(model, splits["val"])
    loss_fn = classifier_loss(model, l2=config.l2)
    out = sweep.train_chunked(
        params,
        step_keys,
        {"learning_rate": jnp.full(len(seeds), config.learning_rate, jnp.float32)},
        seed_schedule(train, config.batch_size, seeds),
        make_loss=lambda hp: loss_fn,
        make_tx=lambda hp: make_tx(hp["learning_rate"], config.lr_schedule, num_steps),
        num_steps=num_steps,
        chunk_steps=config.eval_every_epochs * steps_per_epoch,
        workdir=workdir,
        batch_axis=0,
        eval_fn=lambda p: {f"val_{k}": v for k, v in val(p).items()},
        monitor="val_accuracy",
        labels={"seed": seeds},
        checkpoint_every=config.checkpoint_every_epochs // config.eval_every_epochs,
        resume=config.get("resume", False),
        name="digits_mlp",
        progress=config.progress,
    )
    return {
        "model": model,
        "seeds": seeds,
        "params": out.params,
        "best_params": out.best_params,
        "best_step": out.best_step,
        "best_val_accuracy": out.best["val_accuracy"],
        "steps": out.steps,
        "history": out.history,
        "param_count": param_count(sweep.model_slice(params, 0)),
    }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("digits")
    start = time.perf_counter()
    res = train_seeds(config, splits, workdir)
    ours_time = time.perf_counter() - start
    evaluate = split_evaluator(res["model"], splits["test"])
    test = jax.device_get(evaluate(res["params"]))
    test_best_val = jax.device_get(evaluate(res["best_params"]))
    n, h = len(res["seeds"]), res["history"]
    plots.learning_curves(
        [
            {"step": int(s), **{k: float(np.nanmean(h[k][:, c])) for k in h}}
            for c, s in enumerate(res["steps"])
        ],
        f"{workdir}/curves.png",
        keys=("loss", "val_loss", "val_accuracy"),
        title=f"digits MLP (mean of {n} seeds)",
    )
    acc = [float(a) for a in test["accuracy"]]
    acc_best_val = [float(a) for a in test_best_val["accuracy"]]
    mean, std = mean_std(acc)
    seeds = [int(s) for s in res["seeds"]]
    # Means over seeds (final parameters, as scikit-learn's) unless the name says otherwise.
    metrics = {
        "test_accuracy": mean,
        "test_accuracy_std": std,
        "test_loss": float(np.mean(test["loss"])),
        "final_val_accuracy": float(np.mean(h["val_accuracy"][:, -1])),
        "best_val_accuracy": float(np.mean(res["best_val_accuracy"])),
        "best_val_params_test_accuracy": mean_std(acc_best_val)[0],
        "best_val_params_test_accuracy_std": mean_std(acc_best_val)[1],
        "train_time_s": ours_time,
        "param_count": res["param_count"],
        "num_seeds": n,
        "seeds": seeds,
        "test_accuracy_per_seed": acc,
        "best_val_params_test_accuracy_per_seed": acc_best_val,
        "best_step_per_seed": [int(s) for s in res["best_step"]],
    }
    print(f"  test accuracy, ours over seeds {seeds}: {pm(acc)} (final params)")
    print(f"  test accuracy, ours at each seed's best val accuracy: {pm(acc_best_val)}")
    if config.sklearn:
        sk_acc, sk_time = sklearn_baseline(splits, seeds, config.sklearn_max_iter)
        sk_mean, sk_std = mean_std(sk_acc)
        metrics.update(
            sklearn_test_accuracy=sk_mean,
            sklearn_test_accuracy_std=sk_std,
            sklearn_test_accuracy_per_seed=sk_acc,
            sklearn_time_s=sk_time,
        )
        print(f"  test accuracy, scikit-learn over random_state {seeds}: {pm(sk_acc)}")
        metrics["bars"] = [
            at_least(f"mean test accuracy, {n} seeds ({pm(acc)})", mean, 0.975, paper="-"),
            at_least(
                f"mean test accuracy - scikit-learn's, {n} seeds each ({pm(acc)} vs {pm(sk_acc)})",
                mean - sk_mean,
                0.0,
                paper=f"sklearn {pm(sk_acc)}",
            ),
        ]
    for k, v in metrics.items():
        if k != "bars" and isinstance(v, float) and not math.isnan(v):
            print(f"  {k}: {v:.4f}")
    return metrics
