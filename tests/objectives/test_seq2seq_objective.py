"""dl.objectives.seq2seq: the loss is the mean NLL over real target tokens (numpy reference),
and padding (longer rows, whole filler rows, junk logits there) changes nothing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl.objectives.seq2seq import seq2seq_eval, seq2seq_loss, target_mask


class Bigram(nn.Module):
    """Logits from the previous target token only (ignores the source): a cheap stand-in."""

    @nn.compact
    def __call__(self, src, src_lengths, tgt_in, train=False):
        del src, src_lengths, train
        return nn.Embed(7, 7)(tgt_in)


def _batch(pad_cols=0, pad_rows=0):
    tgt_in = np.array([[1, 3, 4, 0], [1, 5, 0, 0]], np.int32)
    tgt_out = np.array([[3, 4, 2, 0], [5, 2, 0, 0]], np.int32)
    tgt_in = np.pad(tgt_in, ((0, pad_rows), (0, pad_cols)), constant_values=6)  # junk inputs
    tgt_out = np.pad(tgt_out, ((0, pad_rows), (0, pad_cols)))
    return {
        "src": np.zeros((2 + pad_rows, 3), np.int32),
        "src_lengths": np.full((2 + pad_rows,), 3, np.int32),
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
    }


def test_mean_over_real_tokens_and_padding_changes_nothing():
    model = Bigram()
    batch = _batch()
    params = model.init(jax.random.PRNGKey(0), **{k: batch[k] for k in batch if k != "tgt_out"})
    params = params["params"]
    loss_fn = jax.jit(seq2seq_loss(model))
    rng = jax.random.PRNGKey(1)
    loss, (metrics, _) = loss_fn(params, {}, batch, rng)
    # numpy: log-softmax of the embedding rows, over the 5 real tokens only.
    table = np.asarray(params["Embed_0"]["embedding"], np.float64)
    logp = table - np.log(np.exp(table).sum(-1, keepdims=True))
    mask = batch["tgt_out"] != 0
    nll = -logp[batch["tgt_in"], batch["tgt_out"]]
    np.testing.assert_allclose(float(loss), nll[mask].mean(), rtol=1e-6)
    assert float(metrics["tokens"]) == 5.0
    assert abs(float(loss) - nll.mean()) > 1e-3  # the mean over all 8 positions differs
    np.testing.assert_allclose(float(metrics["perplexity"]), np.exp(nll[mask].mean()), rtol=1e-5)
    for padded in (_batch(pad_cols=3), _batch(pad_rows=2), _batch(pad_cols=1, pad_rows=1)):
        other, _ = loss_fn(params, {}, padded, rng)
        np.testing.assert_allclose(float(other), float(loss), rtol=1e-6)
    # An explicit mask wins over pad_id, and the eval sums give the same per-token mean.
    explicit = dict(_batch(pad_cols=2), tgt_mask=target_mask(_batch(pad_cols=2)))
    sums = seq2seq_eval(model)(params, {}, explicit)
    np.testing.assert_allclose(float(sums["loss"] / sums["count"]), float(loss), rtol=1e-6)
    hits = (np.argmax(table[batch["tgt_in"]], -1) == batch["tgt_out"])[mask].sum()
    assert float(sums["accuracy"]) == hits
    assert jnp.asarray(sums["count"]) == 5.0
