"""Label proportion estimation on synthetic multi-label documents: softmax vs sparsemax vs
per-label logistic (Martins & Astudillo 2016, "From Softmax to Sparsemax", Sec. 4.1, Fig. 3).

Run:    python run.py sparsemax_multilabel --scale quick
Expect: quick on a 2-core CPU: about 20 s; at K = 50 with uniform proportions sparsemax's test
        JS divergence is below softmax's at all 10 lengths (0.045 vs 0.059 at L = 200, 0.009 vs
        0.022 at L = 2000), and so is its squared error; the per-label logistic baseline is
        worst at short lengths and best in JSD from L = 1400 on. The paper (Fig. 3, curves
        only) also has sparsemax below softmax.

Data (`dl.data.multilabel`): documents with Poisson(1) labels conditioned on 1 ... K, gold
proportions q uniform over a document's labels ("uniform") or flat-Dirichlet ("random"), length ~
Poisson(L), words from the labels' mixture of multinomials over a vocabulary of V = K words
(each label's multinomial a flat Dirichlet draw: the paper does not say how); 1200 train /
200 dev / 1000 test documents per length L, a fresh dataset per L from the same seed (same labels
and proportions, same label-word multinomials; only the words change). Features are the word
frequencies, standardized with the training split's mean and standard deviation (an affine change
of variables, so the model class is unchanged; it makes L-BFGS converge in a few hundred steps
and puts the L2 grid on one scale for every L).

Models: linear scores z = x W + b (W: [V, K], b: [K]), each fitted with its own loss plus
lambda/2 ||W||^2 (b unpenalized), full-batch L-BFGS (optax.lbfgs) to a gradient-norm tolerance:
  softmax    cross-entropy with soft targets q;      predicted p = softmax(z)
  sparsemax  the sparsemax loss (eq. 18) with q;     predicted p = sparsemax(z)
  logistic   K independent sigmoids on 1[q_k > 0];   predicted p = sigmoid(z) / sum sigmoid(z)
             (the loss is summed over labels, i.e. K times dl.ops' per-label mean)
The lambda path runs from the largest value in `l2_grid` down, each fit warm-started from the
previous one (a vmap over the grid was several times slower: a batched while loop runs until
its slowest member converges, and cold starts need 5-10x the steps); for each model, length and
metric, the lambda with the best dev value is used on test. Test metrics, averaged over
documents: squared error ||p - q||^2 and JS divergence (natural log, at most log 2 ~ 0.693).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl.data.multilabel import PROPORTIONS, multilabel_splits
from dl.eval.divergences import jensen_shannon, squared_error
from dl.ops.losses import binary_cross_entropy_with_logits, cross_entropy
from dl.ops.sparsemax import sparsemax, sparsemax_loss
from dl.optim.lbfgs import minimize_lbfgs
from dl.report import Bar
from experiments._fields import DATA_DIR, SEED, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Martins & Astudillo 2016, From Softmax to Sparsemax: A Sparse Model of Attention "
    "and Multi-Label Classification (ICML), Sec. 4.1 and Fig. 3; data after McCallum "
    "1999 (multi-label mixture model of text)",
    "claim": "Fitting a linear model with the sparsemax loss estimates sparse label proportions "
    "better than with the softmax (cross-entropy) loss, in squared error and Jensen-"
    "Shannon divergence, across average document lengths 200 ... 2000.",
    "published": "Fig. 3: curves only (no table); sparsemax's errors below softmax's",
    "bars": {
        "smoke": "none asserted (plumbing only; the bar is reported)",
        "quick": "K = 50, uniform proportions: sparsemax test JSD <= softmax's at >= 8 of "
        "the 10 lengths",
        "full": "K = 50, uniform proportions: sparsemax test JSD <= softmax's at >= 8 of "
        "the 10 lengths (K = 10 and random proportions are reported)",
    },
}

METRICS = ("jsd", "squared_error")


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # dataset seed (the fits are deterministic from zero)
    c.data_dir = ""  # unused: the data is synthetic
    # (proportions, K) settings; the bar is on ("uniform", 50). The paper's Fig. 3 has all four.
    c.settings = {
        "smoke": (("uniform", 10),),
        "quick": (("uniform", 50),),
        "full": (("uniform", 50), ("random", 50), ("uniform", 10), ("random", 10)),
    }[scale]
    # Average document lengths L (the paper's x-axis, 200 ... 2000).
    c.lengths = {"smoke": (200, 2000)}.get(scale, tuple(range(200, 2001, 200)))
    c.n_train = {"smoke": 200}.get(scale, 1200)  # the paper's 1200 training documents
    c.n_val = {"smoke": 100}.get(scale, 200)  # dev split for choosing lambda
    c.n_test = {"smoke": 100}.get(scale, 1000)  # the paper's 1000 test documents (smoke:
    # = n_val, so evaluation compiles once)
    c.label_rate = 1.0  # Poisson mean of the number of labels (the paper's 1)
    c.concentration = 1.0  # label-word multinomials ~ Dirichlet(concentration): flat
    # lambda for lambda/2 ||W||^2 on standardized features, tried from the largest down (warm
    # starts make the small ones cheap).
    c.l2_grid = {
        "smoke": (1e-2, 1e-4),
        "quick": (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7),
        "full": (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7),
    }[scale]
    c.lbfgs_max_iter = 2000  # a cap; fits stop at the tolerance after ~10-500 steps
    # Gradient-norm stop. At 1e-4 the small-lambda sparsemax fits stop early and their dev JSD
    # moves by up to 1e-3 (8%) at L = 2000, an implicit regularization; 1e-5 doubles the cost.
    c.lbfgs_tol = {"smoke": 1e-4}.get(scale, 1e-5)
    # Where the bar is checked (smoke reports it on its one small setting).
    c.bar_setting = {"smoke": ("uniform", 10)}.get(scale, ("uniform", 50))
    c.bar_min_fraction = 0.8  # of the lengths where sparsemax's JSD must be <= softmax's:
    # the 8 of 10
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "settings": Tuple(Tuple((Choice(PROPORTIONS), Int(lo=2)))),
    "lengths": Tuple(Int(lo=1)),
    "n_train": Int(lo=1),
    "n_val": Int(lo=1),
    "n_test": Int(lo=1),
    "label_rate": Float(lo=0.0, lo_open=True),
    "concentration": Float(lo=0.0, lo_open=True),
    "l2_grid": Tuple(Float(lo=0.0, lo_open=True)),
    "lbfgs_max_iter": Int(lo=1),
    "lbfgs_tol": Float(lo=0.0, lo_open=True),
    "bar_setting": Tuple((Choice(PROPORTIONS), Int(lo=2))),
    "bar_min_fraction": Float(0.0, 1.0),
}


def linear(params: dict, x: jax.Array) -> jax.Array:
    """x: [n, V] -> scores z: [n, K] = x W + b."""
    return x @ params["kernel"] + params["bias"]


def _logistic_loss(z: jax.Array, q: jax.Array) -> jax.Array:
    # dl.ops averages the per-label terms; the sum keeps one example's loss on the scale of the
    # other two losses (one term per label), so one lambda grid serves all three.
    labels = (q > 0).astype(z.dtype)
    return z.shape[-1] * binary_cross_entropy_with_logits(logits=z, targets=labels)


# model -> mean loss (z: [n, K] scores, q: [n, K] gold proportions) -> [].
LOSSES = {
    "softmax": lambda z, q: cross_entropy(logits=z, targets=q),
    "sparsemax": lambda z, q: sparsemax_loss(logits=z, targets=q),
    "logistic": _logistic_loss,
}

# model -> predicted proportions (z: [n, K]) -> [n, K] rows on the simplex. The logistic map
# sigmoid(z) / sum sigmoid(z) is written as softmax(log sigmoid(z)): the plain ratio is 0/0 when
# every sigmoid underflows (all z_k below about -100 in float32).
PREDICTORS = {
    "softmax": lambda z: jax.nn.softmax(z, axis=-1),
    "sparsemax": lambda z: sparsemax(z, axis=-1),
    "logistic": lambda z: jax.nn.softmax(jax.nn.log_sigmoid(z), axis=-1),
}

MODELS = tuple(LOSSES)


def _dispatch(registry: dict, model, *args):
    """registry[model](*args) for a model name, or lax.switch on a traced int32 index into
    MODELS, so that one compiled solver serves every model (compiling L-BFGS three times would
    dominate a short run)."""
    if isinstance(model, str):
        if model not in registry:
            raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
        return registry[model](*args)
    return jax.lax.switch(model, [registry[m] for m in MODELS], *args)


def objective(params: dict, x: jax.Array, q: jax.Array, lam: jax.Array, *, model) -> jax.Array:
    """Mean loss of `model` (a name or an int32 index into MODELS) plus lam/2 ||W||^2.
    x: [n, V]; q: [n, K] gold proportions; lam: []."""
    loss = _dispatch(LOSSES, model, linear(params, x), q)
    return loss + 0.5 * lam * jnp.sum(jnp.square(params["kernel"]))


def predict(params: dict, x: jax.Array, *, model) -> jax.Array:
    """Predicted label proportions [n, K] of `model` (a name or an int32 index into MODELS)."""
    return _dispatch(PREDICTORS, model, linear(params, x))


def fit_lbfgs(x, q, lam, init, *, model, max_iter: int, tol: float):
    """Full-batch L-BFGS from `init` until ||grad|| <= tol or max_iter steps.
    Returns (params, iterations: [] int32)."""
    f = functools.partial(objective, x=x, q=q, lam=lam, model=model)
    return minimize_lbfgs(f, init, max_iter=max_iter, tol=tol)


def evaluate(params: dict, x: jax.Array, q: jax.Array, *, model) -> dict:
    """Mean JS divergence (nats) and mean squared error of the predicted proportions."""
    p = predict(params, x, model=model)
    return {
        "jsd": jnp.mean(jensen_shannon(p=p, q=q)),
        "squared_error": jnp.mean(squared_error(p=p, q=q)),
    }


def standardize(train_x: np.ndarray, *others: np.ndarray) -> list[jax.Array]:
    """Scales every split by the training split's per-feature mean and standard deviation."""
    mean = train_x.mean(0)
    # A word absent from every training document (possible for tiny runs) keeps scale 1.
    std = np.where(train_x.std(0) > 0, train_x.std(0), 1.0)
    return [jnp.asarray((a - mean) / std, jnp.float32) for a in (train_x, *others)]


def run_setting(config, proportions: str, num_labels: int, fit, evaluate_fn) -> dict:
    """Every model at every length for one (proportions, K); returns per-length lists."""
    grid = sorted((float(v) for v in config.l2_grid), reverse=True)
    table = {
        m: {f"{k}{metric}": [] for metric in METRICS for k in ("", "val_", "l2_", "iterations_")}
        | {"fits_at_cap": []}
        for m in MODELS
    }
    for length in config.lengths:
        splits = multilabel_splits(
            num_labels=num_labels,
            mean_length=float(length),
            proportions=proportions,
            label_rate=config.label_rate,
            concentration=config.concentration,
            n_train=config.n_train,
            n_val=config.n_val,
            n_test=config.n_test,
            seed=config.seed,
        )
        x, x_val, x_test = standardize(splits["train"].x, splits["val"].x, splits["test"].x)
        q, q_val, q_test = (jnp.asarray(splits[s].y) for s in ("train", "val", "test"))
        for index, model in enumerate(MODELS):
            model_id = jnp.int32(index)
            params = {
                "kernel": jnp.zeros((x.shape[1], num_labels), jnp.float32),
                "bias": jnp.zeros((num_labels,), jnp.float32),
            }
            val, test, iters = [], [], []
            for lam in grid:
                params, it = fit(x, q, jnp.float32(lam), params, model=model_id)
                iters.append(int(it))
                val.append(jax.device_get(evaluate_fn(params, x_val, q_val, model=model_id)))
                test.append(jax.device_get(evaluate_fn(params, x_test, q_test, model=model_id)))
            for metric in METRICS:
                # The first minimum: ties go to the larger lambda (the grid runs from the largest).
                i = int(np.argmin([v[metric] for v in val]))
                table[model][metric].append(float(test[i][metric]))
                table[model][f"val_{metric}"].append(float(val[i][metric]))
                table[model][f"l2_{metric}"].append(grid[i])
                table[model][f"iterations_{metric}"].append(iters[i])
            # Fits on the path that stopped at the cap instead of the tolerance (typically the
            # smallest lambdas, where the optimum lies far out; a selected one would be flagged).
            table[model]["fits_at_cap"].append(sum(it >= config.lbfgs_max_iter for it in iters))
        print(
            f"  {proportions} K={num_labels} L={length}: "
            + ", ".join(
                f"{m} jsd {table[m]['jsd'][-1]:.4f} sq {table[m]['squared_error'][-1]:.4f}"
                for m in MODELS
            ),
            flush=True,
        )
    wins = int(np.sum(np.asarray(table["sparsemax"]["jsd"]) <= np.asarray(table["softmax"]["jsd"])))
    return {"lengths": list(config.lengths), **table, "sparsemax_jsd_wins": wins}


def plot(result: dict, title: str, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "squared_error", "test squared error  ||p - q||^2"),
        (axes[1], "jsd", "test JS divergence (nats)"),
    ):
        for model in MODELS:
            ax.plot(result["lengths"], result[model][key], marker="o", label=model)
        ax.set_xlabel("average document length L")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    # Shapes are the same at every length, and lambda and the model index are traced, so the
    # solver compiles once per K.
    fit = jax.jit(
        functools.partial(fit_lbfgs, max_iter=config.lbfgs_max_iter, tol=config.lbfgs_tol)
    )
    evaluate_fn = jax.jit(evaluate)
    metrics: dict = {"table": {}}
    bars = []
    for proportions, num_labels in config.settings:
        name = f"{proportions}_K{num_labels}"
        start = time.perf_counter()
        result = run_setting(config, proportions, int(num_labels), fit, evaluate_fn)
        metrics[f"{name}_seconds"] = time.perf_counter() - start
        metrics["table"][name] = result
        plot(
            result,
            f"{proportions} proportions, K = {num_labels} labels (V = K words)",
            f"{workdir}/sparsemax_multilabel_{name}.png",
        )
        for model in MODELS:
            metrics[f"{name}_{model}_mean_jsd"] = float(np.mean(result[model]["jsd"]))
            metrics[f"{name}_{model}_mean_squared_error"] = float(
                np.mean(result[model]["squared_error"])
            )
        metrics[f"{name}_sparsemax_jsd_wins"] = result["sparsemax_jsd_wins"]
        sq_wins = int(
            np.sum(
                np.asarray(result["sparsemax"]["squared_error"])
                <= np.asarray(result["softmax"]["squared_error"])
            )
        )
        metrics[f"{name}_sparsemax_squared_error_wins"] = sq_wins
        metrics[f"{name}_selected_fits_converged"] = all(
            it < config.lbfgs_max_iter
            for m in MODELS
            for metric in METRICS
            for it in result[m][f"iterations_{metric}"]
        )
        metrics[f"{name}_fits_at_cap"] = sum(sum(result[m]["fits_at_cap"]) for m in MODELS)
        if (proportions, int(num_labels)) == tuple(config.bar_setting):
            n = len(result["lengths"])
            need = int(np.ceil(config.bar_min_fraction * n - 1e-9))
            wins = result["sparsemax_jsd_wins"]
            bars.append(
                Bar(
                    f"{name}: lengths where sparsemax test JSD <= softmax's",
                    float(wins),
                    f">= {need} of {n}",
                    bool(wins >= need),
                    "Fig. 3: sparsemax below softmax",
                )
            )
    metrics["bars"] = bars
    for k, v in metrics.items():
        if k not in ("bars", "table"):
            print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return metrics
