"""Ensembles of neural networks: averaging the predictions of independently initialized MLPs beats
the average member (Hansen & Salamon 1990; Dietterich 2000; Lakshminarayanan et al. 2017), with
all members trained at once by `vmap`.

Run:    python run.py ensembles --scale quick
Expect: quick on a 2-core CPU: about 11 s; 32 digits MLPs, mean member test accuracy about 97.3%,
        16-member ensembles about 97.6% (+0.3 points), test NLL 0.135 -> 0.124 from N = 1 to 16.

The members are identical ReLU MLPs (two layers of 200 units, the width of the deep-ensembles
paper's MNIST MLP) on the 8x8 digits, trained with Adam for a fixed 40 epochs (quick; 80 at full)
without weight decay; they differ only in their random initial weights and in the order in which
they visit the training data -- the two sources of diversity of Lakshminarayanan et al.'s "deep
ensembles" (without their adversarial training). All members are one `dl.train.sweep.jit_sweep`
call: one compilation, `vmap` over members of a `lax.scan` over steps. Each member's data order is a
schedule of example indices ([members, steps, batch]; `dl.data.Loader` over the indices 0..n-1) and
the loss gathers its minibatch from the training set, so per-member orders cost a few megabytes
rather than a copy of the data per member.

An ensemble of N averages its members' softmax probabilities (the uniform mixture of
Lakshminarayanan et al., Sec. 2.4) and predicts the argmax. For each N in `ensemble_sizes` the
members are cut into members/N disjoint groups of N, so that N = 1 is exactly the mean member,
every N uses every member, and the largest N is formed twice independently; we report the mean
(and range) over groups of test accuracy and negative log-likelihood, the plurality vote (Hansen &
Salamon's combiner) and the members' mean pairwise disagreement (Dietterich's condition: accurate
members that err differently). Resolution: one of the 360 test images is 0.28 points, and most
member errors are made by every member (ambiguous digits), so the accuracy gain is a few images;
the log-likelihood shows the effect more smoothly.
"""

from __future__ import annotations

import itertools
import math
import time

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dl import data
from dl.nn.mlp import MLP
from dl.ops.activations import ACTIVATIONS, softmax
from dl.ops.losses import cross_entropy
from dl.ops.regularizers import l2_penalty
from dl.optim.optimizers import adam
from dl.report import Bar
from dl.train import sweep
from dl.train.loop import write_history
from experiments._fields import DATA_DIR, SEED, Check, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Hansen & Salamon 1990, Neural network ensembles, IEEE TPAMI 12(10); Dietterich "
    "2000, Ensemble methods in machine learning, MCS; Lakshminarayanan, Pritzel & "
    "Blundell 2017, Simple and scalable predictive uncertainty estimation using deep "
    "ensembles, NeurIPS",
    "claim": "Combining independently trained networks gives a lower error than the typical "
    "member (Hansen & Salamon), because members are accurate and make different errors "
    "(Dietterich); averaging the predictive distributions of randomly initialized "
    "networks improves accuracy and log-likelihood as members are added "
    "(Lakshminarayanan et al., Figures 2-3).",
    "published": "qualitative: ensemble error below the mean member's, decreasing with N "
    "(Lakshminarayanan et al. Fig. 3, MNIST: error and NLL fall from N=1 to 15)",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "test accuracy of 16-member ensembles (averaged softmax; mean of 2 "
        "disjoint ensembles) > the mean member's",
        "full": "test accuracy of 32-member ensembles (averaged softmax; mean of 2 "
        "disjoint ensembles) > the mean member's",
    },
}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # member m: init key fold_in(seed, m), data order seed*1000 + m
    c.data_dir = ""  # unused: digits ship with scikit-learn
    c.members = {"smoke": 4, "quick": 32, "full": 64}[scale]  # all trained in one sweep
    c.ensemble_sizes = {"smoke": (1, 2), "quick": (1, 2, 4, 8, 16), "full": (1, 2, 4, 8, 16, 32)}[
        scale
    ]  # each divides members; the largest
    # is formed members / max(ensemble_sizes) = 2 times independently
    c.hidden = (200, 200)  # ReLU layers of 200 units, as the deep-ensembles paper's MNIST MLP
    c.activation = "relu"  # hidden units
    c.learning_rate = 1e-3  # Adam (Kingma & Ba 2015), the deep-ensembles paper's optimizer
    c.l2 = 0.0  # no weight decay: members fit the training set (loss ~0.01)
    c.batch_size = 64  # 17 steps per epoch on the 1077 training images
    c.num_epochs = {"smoke": 1, "quick": 40, "full": 80}[scale]  # fixed; no early stopping
    return c


# What each config field accepts, checked before anything runs (experiments/_fields.py).
FIELDS = {
    "seed": SEED,
    "data_dir": DATA_DIR,
    "members": Int(lo=1),
    "ensemble_sizes": Tuple(Int(lo=1), increasing=True),
    "hidden": Tuple(Int(lo=1)),
    "activation": Choice(ACTIVATIONS),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "l2": Float(lo=0.0),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
}
CHECKS = [
    Check(
        ("ensemble_sizes", "members"),
        lambda sizes, members: all(members % n == 0 for n in sizes),
        "hold sizes that each divide members",
    )
]


def build(model: MLP, train: data.ArrayData, l2: float):
    """Sweep factories. A batch is {"x": [B] int example indices, "mask": [B]}; the loss gathers
    the examples from `train` (the arrays become constants of the compiled program)."""
    xs, ys = jnp.asarray(train.x), jnp.asarray(train.y)

    def init_fn(key, hparams):
        del hparams
        return model.init(key, xs[:1])["params"]

    def make_loss(hparams):
        del hparams

        def loss_fn(params, extra, batch, rng):
            del rng
            logits = model.apply({"params": params}, xs[batch["x"]])
            data_loss = cross_entropy(logits=logits, targets=ys[batch["x"]], mask=batch["mask"])
            return data_loss + l2 * l2_penalty(params), ({"data_loss": data_loss}, extra)

        return loss_fn

    return init_fn, make_loss


def index_schedules(
    num_examples: int, *, members: int, batch_size: int, steps: int, seed: int
) -> dict[str, np.ndarray]:
    """{"x": [members, steps, B] int32 indices, "mask": [members, steps, B]}: member m visits the
    examples in `dl.data.Loader` order with seed `seed * 1000 + m`."""
    index = data.ArrayData(
        x=np.arange(num_examples, dtype=np.int32), y=np.zeros(num_examples, np.int32)
    )
    per_member = []
    for m in range(members):
        loader = data.Loader(index, batch_size, seed=seed * 1000 + m)
        batches = sweep.stack_batches(loader.batch, steps)
        per_member.append({"x": batches["x"], "mask": batches["mask"]})
    return jax.tree.map(lambda *a: np.stack(a), *per_member)


def group_scores(probs: np.ndarray, labels: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Ensembles of `size` consecutive members in disjoint groups.

    Args:
      probs: [M, N, K] each member's predictive probabilities on N examples.
      labels: [N] int.
      size: members per ensemble; M // size groups (left-over members unused).
    Returns:
      {"accuracy": [G], "nll": [G]} of each group's averaged probabilities (argmax prediction;
      mean -log p(label), p clipped at 1e-12).
    """
    groups = probs.shape[0] // size
    mean = (
        probs[: groups * size]
        .astype(np.float64)
        .reshape(groups, size, *probs.shape[1:])
        .mean(axis=1)
    )  # [G, N, K]
    acc = (mean.argmax(-1) == labels[None]).mean(-1)
    p_true = np.take_along_axis(mean, labels[None, :, None], axis=-1)[..., 0]
    return {"accuracy": acc, "nll": -np.log(np.maximum(p_true, 1e-12)).mean(-1)}


def plurality_vote_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the most common member prediction (ties: the lowest class index)."""
    votes = probs.argmax(-1)  # [M, N]
    counts = np.stack([(votes == k).sum(0) for k in range(probs.shape[-1])], -1)  # [N, K]
    return float((counts.argmax(-1) == labels).mean())


def mean_disagreement(probs: np.ndarray) -> float:
    """Mean over member pairs of the fraction of examples on which their predictions differ."""
    votes = probs.argmax(-1)
    pairs = list(itertools.combinations(range(len(votes)), 2))
    if not pairs:
        return 0.0
    return float(np.mean([(votes[i] != votes[j]).mean() for i, j in pairs]))


def train_members(config) -> dict:
    splits = data.load("digits")
    train, test = splits["train"], splits["test"]
    model = MLP(hidden=tuple(config.hidden), out=10, activation=config.activation)
    init_fn, make_loss = build(model, train, config.l2)
    steps = config.num_epochs * data.Loader(train, config.batch_size, seed=0).steps_per_epoch
    schedule = jax.device_put(
        index_schedules(
            len(train.x),
            members=config.members,
            batch_size=config.batch_size,
            steps=steps,
            seed=config.seed,
        )
    )
    base = jax.random.PRNGKey(config.seed)
    keys = jnp.stack([jax.random.fold_in(base, m) for m in range(config.members)])
    hparams = {"learning_rate": jnp.full((config.members,), config.learning_rate, jnp.float32)}
    compiled, compile_s = sweep.compile_timed(
        sweep.jit_sweep(
            init_fn=init_fn,
            make_loss=make_loss,
            make_tx=lambda hp: adam(hp["learning_rate"]),
            batch_axis=0,
        ),
        keys,
        hparams,
        schedule,
    )
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(keys, hparams, schedule))
    train_s = time.perf_counter() - start

    @jax.jit
    def predict(params, x):
        return jax.vmap(lambda p: softmax(model.apply({"params": p}, x)))(params)  # [M, N, K]

    return {
        "test_probs": np.asarray(predict(result.params, test.x)),
        "test_labels": test.y,
        "final_loss": np.asarray(result.metrics["data_loss"][:, -1]),
        "history": jax.device_get(result.metrics),  # [members, steps] each
        "steps": steps,
        "compile_s": compile_s,
        "train_s": train_s,
    }


def plot_vs_size(table: list[dict], path: str) -> None:
    sizes = [row["members"] for row in table]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "accuracy", "test accuracy"), (axes[1], "nll", "test NLL")):
        mean = [row[f"{key}_mean"] for row in table]
        lo = [row[f"{key}_min"] for row in table]
        hi = [row[f"{key}_max"] for row in table]
        ax.fill_between(sizes, lo, hi, alpha=0.25, label="range over disjoint groups")
        ax.plot(sizes, mean, "o-", label="mean over disjoint groups")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("ensemble size N (averaged softmax)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("digits MLP ensembles: N = 1 is the mean member")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    for n in config.ensemble_sizes:
        if config.members % n:
            raise ValueError(f"ensemble size {n} does not divide members={config.members}")
    res = train_members(config)
    # History: every member's sweep metrics at step 1 and at the end of each epoch.
    write_history(workdir, res["history"], every=res["steps"] // config.num_epochs)
    probs, labels = res["test_probs"], res["test_labels"]
    table = []
    for n in config.ensemble_sizes:
        s = group_scores(probs, labels, n)
        table.append(
            {
                "members": n,
                "groups": len(s["accuracy"]),
                **{
                    f"{k}_{stat}": float(getattr(np, stat)(v))
                    for k, v in s.items()
                    for stat in ("mean", "min", "max")
                },
            }
        )
    plot_vs_size(table, f"{workdir}/accuracy_vs_members.png")
    member_acc = table[0]["accuracy_mean"]
    largest = table[-1]  # N = max(ensemble_sizes), averaged over its disjoint groups
    ensemble_acc, ensemble_nll = largest["accuracy_mean"], largest["nll_mean"]
    metrics = {
        "mean_member_test_accuracy": member_acc,
        "best_member_test_accuracy": table[0]["accuracy_max"],
        "worst_member_test_accuracy": table[0]["accuracy_min"],
        "ensemble_size": largest["members"],
        "ensemble_test_accuracy": ensemble_acc,
        "ensemble_gain": ensemble_acc - member_acc,
        "mean_member_test_nll": table[0]["nll_mean"],
        "ensemble_test_nll": ensemble_nll,
        "plurality_vote_test_accuracy": float(
            np.mean(
                [
                    plurality_vote_accuracy(
                        probs[g * largest["members"] : (g + 1) * largest["members"]], labels
                    )
                    for g in range(largest["groups"])
                ]
            )
        ),
        "mean_pairwise_disagreement": mean_disagreement(probs),
        "members": config.members,
        "steps_per_member": res["steps"],
        "max_final_train_loss": float(np.max(res["final_loss"])),
        "sweep_compile_s": res["compile_s"],
        "sweep_train_s": res["train_s"],
        "table": table,
    }
    metrics["bars"] = [
        Bar(
            f"test accuracy: {largest['members']}-member ensemble (mean of {largest['groups']}) "
            "- mean member",
            ensemble_acc - member_acc,
            "> 0",
            ensemble_acc > member_acc,
            "Hansen & Salamon 1990: ensemble error < typical member's",
        )
    ]
    for k, v in metrics.items():
        if k not in ("bars", "table"):
            print(
                f"  {k}: {v:.4g}" if isinstance(v, float) and not math.isnan(v) else f"  {k}: {v}"
            )
    for row in table:
        print(
            f"  N={row['members']:2d} ({row['groups']:2d} groups): accuracy "
            f"{row['accuracy_mean']:.4f} [{row['accuracy_min']:.4f}, {row['accuracy_max']:.4f}]"
            f"  NLL {row['nll_mean']:.4f}"
        )
    return metrics
