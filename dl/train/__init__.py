"""The training engine: TrainState, steps, the loop, checkpoints, meshes and vmapped sweeps."""

__all__ = ["CheckpointError"]


def __getattr__(name: str):
    # Lazy (PEP 562): importing orbax costs about a second, and most users of dl.train.state or
    # dl.train.step never checkpoint.
    if name == "CheckpointError":
        from dl.train.checkpoint import CheckpointError

        return CheckpointError
    raise AttributeError(f"module 'dl.train' has no attribute {name!r}")
