"""How a training run's fits are staged: progressive input sizes and the compute precision."""
from __future__ import annotations

import contextlib

from kpose._tf import keras


def size_stages(tcfg: dict, input_size: tuple) -> list[tuple[int, int, tuple]]:
    """(first epoch, end epoch, input size) of each fit: progressive resizing.

    With train.early_input_size set, the first train.early_epochs run on smaller crops
    (cheaper steps; the network is fully convolutional), the rest at the model's size.
    The last epoch always runs at the model's size, and an early size that is not
    smaller than the model's (say after --set model.input_size=[64,64]) is not used.
    """
    epochs = int(tcfg["epochs"])
    early = tcfg.get("early_input_size")
    if early and (len(early) != 2 or any(int(v) % 8 for v in early)):
        raise ValueError(f"recipe train.early_input_size={early!r}: expected [height, width], "
                         f"multiples of 8 (e.g. [128, 96])")
    smaller = bool(early) and all(int(e) < int(m) for e, m in zip(early, input_size))
    n = max(0, min(int(tcfg.get("early_epochs") or 0), epochs - 1)) if smaller else 0
    stages = [(0, n, tuple(int(v) for v in early))] if n else []
    if epochs > 0:
        stages.append((n, epochs, tuple(input_size)))
    return stages


@contextlib.contextmanager
def precision(mixed: bool):
    """Layers built meanwhile compute in float16 with float32 weights (Keras "mixed_float16")."""
    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def any_input_size(net):
    """Let a fixed-size functional network run on batches of another size meanwhile.

    Every layer of kpose's networks is convolutional or global pooling; only Keras's
    input check is tied to the size the model was built for.
    """
    spec = net.input_spec
    net.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: int(net.input_shape[-1])})
    try:
        yield
    finally:
        net.input_spec = spec
