"""dl.models.segnet: output shapes on odd sizes, exact parameter counts, decoder behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.models.segnet import DECODERS, SegmentationNet
from dl.train.state import param_count


def _init(decoder, widths=(16, 32, 64), shape=(2, 64, 84, 1)):
    model = SegmentationNet(decoder=decoder, widths=widths, classes=11)
    x = jnp.ones(shape, jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return model, variables, x


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


@pytest.mark.parametrize("decoder", DECODERS)
def test_shapes_and_param_counts(decoder):
    model, variables, x = _init(decoder)
    out = model.apply(variables, x, train=False)
    assert out.shape == (2, 64, 84, 11)
    bn = 2 * (16 + 32 + 64 + 32 + 16 + 16)  # scale + bias per BN channel
    enc = _conv(3, 1, 16, False) + _conv(3, 16, 32, False) + _conv(3, 32, 64, False)
    dec = _conv(3, 64, 32, False) + _conv(3, 32, 16, False) + _conv(3, 16, 16, False)
    head = _conv(1, 16, 11, True)
    up = {"deconv": _conv(4, 64, 64, True) + _conv(4, 32, 32, True) + _conv(4, 16, 16, True)}
    assert param_count(variables["params"]) == enc + dec + head + bn + up.get(decoder, 0)


@pytest.mark.parametrize("decoder", DECODERS)
def test_odd_sizes_and_leading_axes(decoder):
    model, variables, _ = _init(decoder, widths=(4, 8), shape=(1, 23, 37, 3))
    x = jnp.ones((2, 3, 23, 37, 3), jnp.float32)
    assert model.apply(variables, x, train=False).shape == (2, 3, 23, 37, 11)


def test_unpool_decoder_places_features_at_argmax():
    # With one block, the unpool decoder's input to its conv is zero except where the encoder's
    # 2x2 maxima were: a single bright pixel's logits differ from the rest only near it.
    model, variables, _ = _init("unpool", widths=(4,), shape=(1, 8, 8, 1))
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 3, 5, 0] = 5.0
    y = model.apply(variables, jnp.asarray(x), train=False)
    far = np.asarray(y[0, 0, 0])
    np.testing.assert_allclose(np.asarray(y[0, 7, 0]), far, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(y[0, 3, 5]), far)


def test_unknown_decoder():
    with pytest.raises(ValueError, match="valid: deconv, unpool, bilinear"):
        _init("nearest", widths=(4,), shape=(1, 8, 8, 1))
