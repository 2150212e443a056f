"""dl.nn.attention against numpy references of each score function, a hand-written torch
Bahdanau score, and the masking and normalization properties (softmax and sparsemax)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.nn.attention import Attention, masked_normalize

B, S, DQ, DK, A = 3, 5, 4, 6, 7
LENGTHS = np.array([5, 3, 1])


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, DQ)).astype(np.float32)
    keys = rng.normal(size=(B, S, DK)).astype(np.float32)
    mask = np.arange(S)[None, :] < LENGTHS[:, None]
    return query, keys, mask


def np_sparsemax(z):
    """Alg. 1 of Martins & Astudillo 2016, row by row, in float64."""
    out = np.zeros_like(z, dtype=np.float64)
    for r, row in enumerate(np.asarray(z, np.float64)):
        srt = np.sort(row)[::-1]
        k = np.arange(1, len(row) + 1)
        cums = np.cumsum(srt)
        kz = k[1 + k * srt > cums].max()
        tau = (cums[kz - 1] - 1) / kz
        out[r] = np.maximum(row - tau, 0)
    return out


def np_attention(kind, normalize, params, query, keys, mask):
    if kind == "dot":
        z = np.einsum("bd,bsd->bs", query, keys)
    elif kind == "general":
        w = params["key"]["kernel"]  # [Dk, Dq]
        z = np.einsum("bd,bsd->bs", query, keys @ w)
    else:
        proj = keys @ params["key"]["kernel"] + params["key"]["bias"]
        hid = np.tanh(proj + (query @ params["query"]["kernel"])[:, None, :])
        z = (hid @ params["v"]["kernel"])[..., 0]
    z = np.asarray(z, np.float64)
    weights = np.zeros_like(z)
    for b in range(B):
        zb = z[b, mask[b]][None]
        if normalize == "softmax":
            e = np.exp(zb - zb.max())
            weights[b, mask[b]] = (e / e.sum())[0]
        else:
            weights[b, mask[b]] = np_sparsemax(zb)[0]
    return np.einsum("bs,bsd->bd", weights, keys), weights


def _make(kind, normalize):
    features = {"additive": A, "general": DQ, "dot": None}[kind]
    return Attention(kind, normalize, features=features)


CASES = list(itertools.product(("additive", "dot", "general"), ("softmax", "sparsemax")))


@pytest.mark.parametrize("kind,normalize", CASES)
def test_matches_numpy_reference_and_masks_padding(kind, normalize):
    query, keys, mask = _inputs()
    if kind == "dot":
        query = np.random.default_rng(1).normal(size=(B, DK)).astype(np.float32)
    attn = _make(kind, normalize)
    variables = attn.init(jax.random.PRNGKey(0), query, keys, mask)
    params = jax.tree.map(np.asarray, variables.get("params", {}))
    (context, weights), state = jax.jit(
        lambda v, q, k, m: attn.apply(v, q, k, m, mutable=["intermediates"])
    )(variables, query, keys, mask)
    ref_context, ref_weights = np_attention(kind, normalize, params, query, keys, mask)
    np.testing.assert_allclose(weights, ref_weights, atol=2e-6)
    np.testing.assert_allclose(context, ref_context, atol=2e-5)
    w = np.asarray(weights)
    assert np.all(w[~mask] == 0.0)  # exactly zero on padding
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    assert w[2, 0] == 1.0  # a single real position takes all the weight
    np.testing.assert_array_equal(state["intermediates"]["attention"][0], w)  # sown


def test_padded_keys_do_not_matter_and_projection_can_be_reused():
    query, keys, mask = _inputs()
    attn = _make("additive", "softmax")
    v = attn.init(jax.random.PRNGKey(1), query, keys, mask)
    apply = jax.jit(lambda k, p: attn.apply(v, query, k, mask, p))
    junk = np.where(mask[..., None], keys, 1e4).astype(np.float32)
    projected = attn.apply(v, keys, method="project_keys")
    base_c, base_w = apply(keys, None)
    c2, w2 = apply(junk, None)
    c3, w3 = apply(keys, projected)
    np.testing.assert_array_equal(base_w, w3)
    np.testing.assert_array_equal(base_c, c3)
    np.testing.assert_allclose(w2, base_w, atol=1e-7)
    np.testing.assert_allclose(c2, base_c, atol=1e-5)


def test_additive_score_against_torch_by_hand():
    torch = pytest.importorskip("torch")
    query, keys, mask = _inputs(2)
    attn = _make("additive", "softmax")
    v = attn.init(jax.random.PRNGKey(2), query, keys, mask)
    p = jax.tree.map(lambda a: torch.tensor(np.asarray(a), dtype=torch.float64), v["params"])
    W, b, U, vv = p["key"]["kernel"], p["key"]["bias"], p["query"]["kernel"], p["v"]["kernel"]
    h = torch.tensor(keys, dtype=torch.float64)
    s = torch.tensor(query, dtype=torch.float64)
    z = (torch.tanh(h @ W + b + (s @ U)[:, None, :]) @ vv).squeeze(-1)  # v^T tanh(W h + U s + b)
    z = z.masked_fill(~torch.tensor(mask), float("-inf"))
    w = torch.softmax(z, dim=-1)
    ctx = torch.einsum("bs,bsd->bd", w, h)
    context, weights = attn.apply(v, query, keys, mask)
    np.testing.assert_allclose(weights, w.numpy(), atol=1e-6)
    np.testing.assert_allclose(context, ctx.numpy(), atol=1e-5)


def test_sparsemax_is_sparse_and_softmax_is_not():
    rng = np.random.default_rng(3)
    scores = jnp.asarray(3.0 * rng.normal(size=(4, 9)).astype(np.float32))
    mask = jnp.asarray(np.arange(9)[None, :] < np.array([[9], [7], [5], [2]]))
    sp = np.asarray(masked_normalize(scores, mask, "sparsemax"))
    so = np.asarray(masked_normalize(scores, mask, "softmax"))
    m = np.asarray(mask)
    assert np.all(sp[~m] == 0.0) and np.all(so[~m] == 0.0)
    assert np.all(so[m] > 0.0)
    assert (sp[m] == 0.0).sum() >= 5  # exact zeros among real positions too
    np.testing.assert_allclose(sp.sum(-1), 1.0, atol=1e-6)
    # A row with no real position: zero weights, not NaN.
    empty = np.asarray(masked_normalize(scores[:1], jnp.zeros((1, 9), bool), "sparsemax"))
    assert np.all(empty == 0.0)


def test_bad_arguments_raise():
    query, keys, mask = _inputs()
    with pytest.raises(ValueError, match="attention kind"):
        Attention("cosine").init(jax.random.PRNGKey(0), query, keys, mask)
    with pytest.raises(ValueError, match="needs `features`"):
        Attention("general").init(jax.random.PRNGKey(0), query, keys, mask)
    with pytest.raises(ValueError, match="query size == key size"):
        Attention("dot").init(jax.random.PRNGKey(0), query, keys, mask)
    with pytest.raises(ValueError, match="normalize"):
        masked_normalize(jnp.zeros((1, 2)), None, "entmax")
