"""The PyTorch twin of `dl.models.seq2seq.Seq2Seq(cell="gru", attention="additive")` (one
layer, bidirectional encoder, input feeding, no dropout), with a flax parameter tree copied in,
for the seq2seq benchmarks. Written the way a PyTorch user would: `torch.nn.GRU`
(bidirectional, batch first) for the encoder, `torch.nn.GRUCell` stepped in a Python loop for
the decoder, `torch.nn.Linear` layers.

Copying: flax kernels are [in, out], torch weights [out, in]. The GRUs have PyTorch's gate
order (r, z, n) in both, and dl's `GRU` keeps one bias per gate plus ``recurrent_bias_n``, so
torch's ``bias_ih`` = dl's input bias, ``bias_hh`` = (0, 0, recurrent_bias_n), and a gradient
hook keeps the r and z parts of ``bias_hh`` at zero, so both sides train the same parameters.
Sources are full length here (no padding), so no packing is needed.
"""

from __future__ import annotations

import numpy as np


def build(params: dict, *, device: str = "cpu"):
    """A `torch.nn.Module` with ``encode(src) -> (keys, projected, h0)``, ``step(tokens, state)
    -> (logits, state)`` and ``forward(src, tgt_in) -> logits [B, T, V]``."""
    import torch
    from torch import nn

    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # a writable copy
    enc, dec = params["encoder"], params["decoder"]
    src_vocab, embed = params["src_embed"]["embedding"].shape
    tgt_vocab = params["tgt_embed"]["embedding"].shape[0]
    half = enc["layer_0"]["recurrent_kernel"].shape[0]
    hidden = dec["layer_0"]["recurrent_kernel"].shape[0]
    features = params["attend"]["v"]["kernel"].shape[0]

    def copy_gru(weight_ih, weight_hh, bias_ih, bias_hh, p):
        weight_ih.copy_(t(p["input"]["kernel"].T))
        weight_hh.copy_(t(p["recurrent_kernel"].T))
        bias_ih.copy_(t(p["input"]["bias"]))
        h = p["recurrent_kernel"].shape[0]
        bias_hh.copy_(torch.cat([torch.zeros(2 * h), t(p["recurrent_bias_n"])]))
        mask = torch.cat([torch.zeros(2 * h), torch.ones(h)])
        bias_hh.register_hook(lambda g: g * mask.to(g.device))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = nn.Embedding(src_vocab, embed)
            self.tgt_embed = nn.Embedding(tgt_vocab, embed)
            self.encoder = nn.GRU(embed, half, batch_first=True, bidirectional=True)
            self.bridge = nn.Linear(2 * half, hidden)
            self.key = nn.Linear(2 * half, features)
            self.query = nn.Linear(hidden, features, bias=False)
            self.v = nn.Linear(features, 1, bias=False)
            self.cell = nn.GRUCell(embed + hidden, hidden)
            self.combine = nn.Linear(2 * half + hidden, hidden, bias=False)
            self.out = nn.Linear(hidden, tgt_vocab)
            self.hidden = hidden

        def encode(self, src):
            keys, h_n = self.encoder(self.src_embed(src))  # [B, S, 2 half], [2, B, half]
            summary = torch.cat([h_n[0], h_n[1]], dim=-1)
            h = torch.tanh(self.bridge(summary))
            feed = torch.zeros(src.shape[0], self.hidden, device=src.device)
            return keys, self.key(keys), (h, feed)

        def step(self, tokens, keys, projected, state):
            h, feed = state
            h = self.cell(torch.cat([self.tgt_embed(tokens), feed], dim=-1), h)
            scores = self.v(torch.tanh(projected + self.query(h)[:, None, :]))[..., 0]
            weights = torch.softmax(scores, dim=-1)
            context = torch.einsum("bs,bsd->bd", weights, keys)
            feed = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
            return self.out(feed), (h, feed)

        def forward(self, src, tgt_in):
            keys, projected, state = self.encode(src)
            logits = []
            for i in range(tgt_in.shape[1]):
                lg, state = self.step(tgt_in[:, i], keys, projected, state)
                logits.append(lg)
            return torch.stack(logits, dim=1)

    m = Model()
    with torch.no_grad():
        m.src_embed.weight.copy_(t(params["src_embed"]["embedding"]))
        m.tgt_embed.weight.copy_(t(params["tgt_embed"]["embedding"]))
        g = m.encoder
        copy_gru(g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0, enc["layer_0"])
        copy_gru(
            g.weight_ih_l0_reverse,
            g.weight_hh_l0_reverse,
            g.bias_ih_l0_reverse,
            g.bias_hh_l0_reverse,
            enc["layer_0_backward"],
        )
        c = m.cell
        copy_gru(c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh, dec["layer_0"])
        m.bridge.weight.copy_(t(params["bridge_0"]["kernel"].T))
        m.bridge.bias.copy_(t(params["bridge_0"]["bias"]))
        a = params["attend"]
        m.key.weight.copy_(t(a["key"]["kernel"].T))
        m.key.bias.copy_(t(a["key"]["bias"]))
        m.query.weight.copy_(t(a["query"]["kernel"].T))
        m.v.weight.copy_(t(a["v"]["kernel"].T))
        m.combine.weight.copy_(t(dec["combine"]["kernel"].T))
        m.out.weight.copy_(t(dec["out"]["kernel"].T))
        m.out.bias.copy_(t(dec["out"]["bias"]))
    return m.to(device)
