"""Decoding over any step function `(params, tokens, state) -> (logits, state)`."""
