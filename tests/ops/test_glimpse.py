"""The retina against a numpy crop-and-block-mean reference, borders and gradients included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.ops.glimpse import crop, patch_sizes, retina, retina_batch, shrink


def reference(image, loc, base, scales):
    """numpy: zero-pad, crop the side-s square whose top-left is floor(c) - s // 2 with
    c = (l + 1) / 2 * (H, W), average f x f blocks with loops."""
    h, w, ch = image.shape
    loc = np.clip(loc, -1, 1)
    out = []
    for j in range(scales):
        s, f = base * 2**j, 2**j
        pad = np.zeros((h + 2 * s, w + 2 * s, ch))
        pad[s : s + h, s : s + w] = image
        r = int(np.floor((loc[0] + 1) / 2 * h)) - s // 2 + s
        q = int(np.floor((loc[1] + 1) / 2 * w)) - s // 2 + s
        p = pad[r : r + s, q : q + s]
        small = np.zeros((base, base, ch))
        for a in range(base):
            for b in range(base):
                small[a, b] = p[a * f : (a + 1) * f, b * f : (b + 1) * f].mean(axis=(0, 1))
        out.append(small)
    return np.stack(out)


# (-0.87, 0.71) and (0.33, -0.5) avoid centres on exact pixel edges, where float32 and float64
# floors may differ; the corners and the centre are exact in both.
LOCS = [(0.0, 0.0), (-1.0, -1.0), (1.0, 1.0), (-0.87, 0.71), (0.33, -0.5), (1.5, -2.0)]


@pytest.mark.parametrize("loc", LOCS)
def test_retina_matches_numpy(loc):
    image = np.random.default_rng(0).random((20, 24, 2)).astype(np.float32)
    got = retina(jnp.asarray(image), jnp.asarray(loc, jnp.float32), base=4, scales=3)
    np.testing.assert_allclose(got, reference(image, np.array(loc), 4, 3), rtol=1e-6, atol=1e-6)


def test_known_crop_and_border_padding():
    image = jnp.arange(36.0).reshape(6, 6, 1)
    # centre (3, 3): rows/cols 2..3 for side 2
    np.testing.assert_array_equal(crop(image, jnp.zeros(2), 2)[..., 0], [[14, 15], [20, 21]])
    # top-left corner: centre (0, 0), side 2 covers rows/cols -1..0: zeros except pixel (0, 0)
    np.testing.assert_array_equal(crop(image, -jnp.ones(2), 2)[..., 0], [[0, 0], [0, 0.0]])
    corner = crop(image + 1.0, -jnp.ones(2), 4)[..., 0]  # rows/cols -2..1
    np.testing.assert_array_equal(corner[2:, 2:], [[1, 2], [7, 8]])
    assert not corner[:2].any() and not corner[:, :2].any()
    assert shrink(jnp.ones((8, 8, 1)), 2).shape == (2, 2, 1)
    assert patch_sizes(8, 3) == (8, 16, 32)


def test_batch_jit_and_gradient_wrt_image():
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 16, 16, 1))
    locs = jnp.array([[0.0, 0.0], [0.5, -0.5], [-1.0, 1.0]])
    got = jax.jit(lambda a, b: retina_batch(a, b, base=4, scales=2))(x, locs)
    assert got.shape == (3, 2, 4, 4, 1)
    np.testing.assert_allclose(got[1], retina(x[1], locs[1], base=4, scales=2), rtol=1e-6)
    # the glimpse is linear in the image: its gradient is the block-mean weights (sum = #scales)
    g = jax.grad(lambda im: retina(im, jnp.zeros(2), base=4, scales=2).sum())(x[0])
    np.testing.assert_allclose(g.sum(), 16 + 16, rtol=1e-6)  # each scale's 16 means weigh 1
    assert float(g.max()) == pytest.approx(1.0 + 0.25)  # a centre pixel: scale 0 and scale 1
