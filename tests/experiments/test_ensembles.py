"""experiments/ensembles.py: ensemble scoring against brute force and scipy, the index schedules
against the data loader, and a smoke run."""

import itertools
import json
import os

import numpy as np
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dl import data
from experiments import ensembles
from experiments._runner import run_experiment


def brute_force_group(probs, labels, members):
    """Accuracy and NLL of the averaged probabilities of `members`, one example at a time."""
    correct, nll = 0, 0.0
    for i, label in enumerate(labels):
        mean = [
            sum(float(probs[m, i, k]) for m in members) / len(members)
            for k in range(probs.shape[-1])
        ]
        correct += int(np.argmax(mean) == label)
        nll -= np.log(max(mean[label], 1e-12))
    return correct / len(labels), nll / len(labels)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 4),
    hnp.arrays(np.float32, (12, 5, 3), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    hnp.arrays(np.int32, 5, elements=st.integers(0, 2)),
)
def test_group_scores_match_brute_force(size, probs, labels):
    # Coarse values give ties and exact zeros (p(label) = 0 -> the clipped NLL); rows need not
    # sum to one for the averaging to be checked.
    out = ensembles.group_scores(probs, labels, size)
    groups = 12 // size
    assert out["accuracy"].shape == out["nll"].shape == (groups,)
    for g in range(groups):
        acc, nll = brute_force_group(probs, labels, range(g * size, (g + 1) * size))
        assert out["accuracy"][g] == acc
        np.testing.assert_allclose(out["nll"][g], nll, rtol=1e-9)


def test_size_one_groups_are_the_members():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(6, 50)).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    out = ensembles.group_scores(probs, labels, 1)
    np.testing.assert_array_equal(out["accuracy"], (probs.argmax(-1) == labels).mean(-1))
    np.testing.assert_allclose(
        out["nll"], -np.log(probs[:, np.arange(50), labels]).mean(-1), rtol=1e-6
    )


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        np.int32, st.tuples(st.integers(1, 7), st.integers(1, 20)), elements=st.integers(0, 3)
    )
)
def test_plurality_vote_matches_scipy_mode(votes):
    probs = np.eye(4, dtype=np.float32)[votes]  # one-hot: each member votes for `votes`
    labels = np.arange(votes.shape[1]) % 4
    # scipy's mode breaks ties toward the smallest value, as the vote's argmax does.
    mode = scipy.stats.mode(votes, axis=0, keepdims=False).mode
    assert ensembles.plurality_vote_accuracy(probs, labels) == (mode == labels).mean()


def test_mean_disagreement_brute_force():
    rng = np.random.default_rng(1)
    probs = rng.random((5, 30, 3))
    votes = probs.argmax(-1)
    pairs = list(itertools.combinations(range(5), 2))
    expected = sum(sum(votes[i, n] != votes[j, n] for n in range(30)) / 30 for i, j in pairs)
    np.testing.assert_allclose(ensembles.mean_disagreement(probs), expected / len(pairs))
    assert ensembles.mean_disagreement(probs[:1]) == 0.0
    assert ensembles.mean_disagreement(np.stack([probs[0]] * 3)) == 0.0


def test_index_schedules_are_the_loader_batches():
    train = data.load("digits")["train"]
    sched = ensembles.index_schedules(len(train.x), members=3, batch_size=64, steps=40, seed=2)
    assert sched["x"].shape == sched["mask"].shape == (3, 40, 64)
    for m in range(3):
        loader = data.Loader(train, 64, seed=2 * 1000 + m)
        for t in (0, 16, 17, 39):  # 17 steps per epoch: the padded last batch and a new epoch
            batch = loader.batch(t)
            np.testing.assert_array_equal(train.x[sched["x"][m, t]], batch["x"])
            np.testing.assert_array_equal(train.y[sched["x"][m, t]], batch["y"])
            np.testing.assert_array_equal(sched["mask"][m, t], batch["mask"])
    # Each epoch visits every example once (counting masked padding out); members' orders differ.
    first_epoch = sched["x"][0, :17][sched["mask"][0, :17] > 0]
    np.testing.assert_array_equal(np.sort(first_epoch), np.arange(len(train.x)))
    assert not np.array_equal(sched["x"][0, 0], sched["x"][1, 0])


def test_smoke(tmp_path):
    results = run_experiment(
        "ensembles", {"ensembles": ensembles}, scale="smoke", workdir=str(tmp_path)
    )
    for name in ("config.json", "results.json", "accuracy_vs_members.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["experiment"] == "ensembles"
    m = results["metrics"]
    config = ensembles.get_config("smoke")
    assert [row["members"] for row in m["table"]] == list(config.ensemble_sizes)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == config.members * (config.num_epochs + 1)  # step 1 and each epoch's end
    assert {"step", "model", "loss", "data_loss", "grad_norm"} <= set(rows[0])
    assert [row["groups"] for row in m["table"]] == [
        config.members // n for n in config.ensemble_sizes
    ]
    for key in (
        "mean_member_test_accuracy",
        "ensemble_test_accuracy",
        "plurality_vote_test_accuracy",
    ):
        assert 0.1 < m[key] <= 1.0, key
    assert (
        m["worst_member_test_accuracy"]
        <= m["mean_member_test_accuracy"]
        <= (m["best_member_test_accuracy"])
    )
    # Averaging probabilities can only lower the mean NLL (Jensen: -log is convex).
    assert m["ensemble_test_nll"] <= m["mean_member_test_nll"] + 1e-9
    assert 0.0 < m["mean_pairwise_disagreement"] < 1.0  # distinct initializations differ
    assert len(results["bars"]) == 1
