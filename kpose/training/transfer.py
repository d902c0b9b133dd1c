"""Starting a training run from trained weights: by layer name, with keypoint heads
mapped between skeletons by keypoint name, and the training-only heads kept with runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from kpose._tf import keras
from kpose.model_io import load_model
from kpose.models import get_family
from kpose.models.batch_norm import calibrate_batch_norms
from kpose.skeletons import Skeleton

def _keypoint_axes(src: tuple, dst: tuple, ks: int, kd: int) -> list[int] | None:
    """Axes of a weight with ks keypoint channels in the source and kd in the target,
    or None when the shapes differ on any other axis."""
    if len(src) != len(dst):
        return None
    axes = [a for a, (s, d) in enumerate(zip(src, dst)) if s == ks and d == kd]
    if any(s != d for a, (s, d) in enumerate(zip(src, dst)) if a not in axes):
        return None
    return axes


def _transfer_matrix(src: Skeleton, dst: Skeleton) -> np.ndarray:
    """[Kd, Ks]: how each target keypoint's channel is made from the source channels.

    One-hot for a keypoint both skeletons name; for a head keypoint the source lacks
    (COCO's face from MPII), the mean of the source's head keypoints, so it starts as
    a head detector instead of noise; a zero row (kept as initialised) otherwise.
    """
    mix = np.zeros((dst.num_keypoints, src.num_keypoints))
    src_head = [src.index(n) for n in src.extra.get("head_keypoints", ())]
    for k, name in enumerate(dst.keypoints):
        if name in src.keypoints:
            mix[k, src.index(name)] = 1.0
        elif name in dst.extra.get("head_keypoints", ()) and src_head:
            mix[k, src_head] = 1.0 / len(src_head)
    return mix


def _map_keypoint_channels(src: np.ndarray, dst: np.ndarray, axes: list[int],
                           mix: np.ndarray) -> np.ndarray:
    """dst with its keypoint channels (on `axes`) made from src's through `mix` [Kd, Ks].

    On one keypoint axis (a head's output channels, its bias) rows of `mix` are linear
    combinations. On layers that connect keypoint channels to keypoint channels (the
    transposed convolutions: two axes) only keypoints both skeletons name are copied:
    a mean there would feed each stand-in channel from all of them at once.
    """
    out = dst.copy()
    if len(axes) == 1:
        a = axes[0]
        rows = np.flatnonzero(mix.any(axis=1))
        mixed = np.moveaxis(np.tensordot(src, mix[rows], axes=([a], [1])), -1, a)
        index = [slice(None)] * dst.ndim
        index[a] = rows
        out[tuple(index)] = mixed.astype(dst.dtype)
        return out
    exact = np.flatnonzero((mix == 1.0).any(axis=1))
    source = mix[exact].argmax(axis=1)
    sub = src
    for a in axes:
        sub = np.take(sub, source, axis=a)
    grid = [exact if a in axes else np.arange(n) for a, n in enumerate(dst.shape)]
    out[np.ix_(*grid)] = sub
    return out


def resolve_init(init: str | Path, mcfg: dict) -> Path:
    """A recipe's init: "official" = the released weights of the recipe's family and variant."""
    if str(init) == "official":
        family = get_family(mcfg["family"])
        if family.pretrained is None:
            raise ValueError(f"init: official: no released weights are known for {family.name}; "
                             f"set init to a run folder or null")
        return family.pretrained(mcfg["variant"])
    return Path(os.path.expandvars(str(init)))


def backbone_loader(mcfg: dict) -> Callable[[keras.Model], str] | None:
    """The loader of a recipe's model.backbone_weights (network -> summary), None when unset.
    Raises at once where the weights cannot be had (and downloads them where they can)."""
    source = mcfg.get("backbone_weights")
    if source is None:
        return None
    family = get_family(mcfg["family"])
    if family.backbone_weights is None:
        raise ValueError(f"recipe model.backbone_weights={source!r}: {family.name} has no separate backbone "
                         f"to load weights into; set it to null (init: starts from a whole trained model)")
    return family.backbone_weights(mcfg["variant"], str(source))


TRAINING_HEADS_FILE = "training_heads.npz"


def save_training_heads(net, inference, directory: Path) -> None:
    """Save the training-only heads (EfficientPose: pass-1 PAFs, pass-2 maps) beside a saved
    model: `--init` from it then resumes with them, not with fresh heads whose first
    gradients disturb the trained features."""
    keep = {layer.name for layer in inference.layers}
    arrays = {f"{layer.name}/{i}": w for layer in net.layers if layer.name not in keep
              for i, w in enumerate(layer.get_weights())}
    if arrays:
        np.savez(Path(directory) / TRAINING_HEADS_FILE, **arrays)


def _load_training_heads(net, directory: Path) -> list[str]:
    """Restore the heads _save_training_heads wrote, where names and shapes match."""
    path = Path(directory) / TRAINING_HEADS_FILE
    if not path.exists():
        return []
    by_layer: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            name, i = key.rsplit("/", 1)
            by_layer.setdefault(name, {})[int(i)] = z[key]
    layers = {layer.name: layer for layer in net.layers}
    loaded = []
    for name, ws in by_layer.items():
        layer = layers.get(name)
        new = [ws[i] for i in sorted(ws)]
        if layer is not None and [w.shape for w in new] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(new)
            loaded.append(name)
    return loaded


def init_weights(net, init: str | Path, skeleton: Skeleton, mcfg: dict, calibration: Iterable | None = None) -> str:
    """Copy weights from a trained model (run/model folder or official .h5) by layer name.

    A model of another skeleton (e.g. the official MPII16 releases into a COCO17
    recipe) transfers too: keypoint-channel axes of its heads are mapped by keypoint
    name, and keypoints the source lacks keep their fresh initialisation. Returns a
    one-line summary of what was copied. A batch norm taking the weights of another
    normalisation (the family's adapt_weights gives its gamma and beta) gets moving
    statistics measured on `calibration` batches when given (else mean 0, variance 1).
    """
    source_model = load_model(init)
    src_arch = (source_model.config.get("family"), source_model.config.get("variant"))
    family = get_family(mcfg["family"])
    takes = {mcfg["variant"], *family.weights_from.get(mcfg["variant"], ())} if src_arch[0] == mcfg["family"] \
        else set()
    if src_arch[1] not in takes:
        raise ValueError(f"init={init!s} is an {src_arch[0]} {src_arch[1]} model; the recipe builds "
                         f"{mcfg['family']} {mcfg['variant']}: start from a model of the same family "
                         f"and variant (model.family / model.variant)")
    src_skel = source_model.skeleton
    mix = _transfer_matrix(src_skel, skeleton)
    source = source_model.keras_model
    same = src_skel.keypoints == skeleton.keypoints
    copied, mapped, renormed = 0, [], []
    source_weights = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    if src_arch[1] != mcfg["variant"] and family.adapt_weights is not None:
        source_weights = family.adapt_weights(src_arch[1], mcfg["variant"], source_weights)
    for name, src_w in source_weights.items():
        layer = source.get_layer(name)
        try:
            target = net.get_layer(name)
        except ValueError:
            continue
        dst_w = target.get_weights()
        if isinstance(target, keras.layers.BatchNormalization) and \
                not isinstance(layer, keras.layers.BatchNormalization):
            # A batch norm from another normalisation (per-image): no moving statistics to take.
            renormed.append(name)
        new, remapped = [], False
        for s, d in zip(src_w, dst_w):
            axes = None if same else _keypoint_axes(s.shape, d.shape, src_skel.num_keypoints,
                                                    skeleton.num_keypoints)
            if axes:
                new.append(_map_keypoint_channels(s, d, axes, mix))
                remapped = True
            elif s.shape == d.shape:
                new.append(s)
            else:
                raise ValueError(f"init={init!s}: layer {layer.name!r} has shapes "
                                 f"{[w.shape for w in src_w]}, the recipe's model has "
                                 f"{[w.shape for w in dst_w]}; use a model of the same "
                                 f"family and variant")
        target.set_weights(new)
        copied += 1
        if remapped:
            mapped.append(layer.name)
    if not copied:
        raise ValueError(f"init={init!s}: no layer names in common with the recipe's model")
    summary = f"{copied} layers from {init}"
    if renormed:
        n = calibrate_batch_norms(net, calibration, renormed) if calibration is not None else 0
        summary += (f" ({len(renormed)} per-image normalisations as BatchNormalization: gamma and beta "
                    f"copied, moving statistics "
                    f"{f'measured on {n} training batches' if n else 'learnt in training'})")
    src_dir = Path(init)
    if (src_dir / "model" / TRAINING_HEADS_FILE).exists():
        src_dir = src_dir / "model"
    heads = _load_training_heads(net, src_dir) if src_dir.is_dir() else []
    if heads:
        summary += f" (with its training heads {', '.join(heads)})"
    if not same:
        named = (mix == 1.0).any(axis=1)
        stand_in = [n for n, r, e in zip(skeleton.keypoints, mix, named) if r.any() and not e]
        fresh = [n for n, r in zip(skeleton.keypoints, mix) if not r.any()]
        summary += (f"; {src_skel.name} -> {skeleton.name}: {len(mapped)} head layers mapped by "
                    f"keypoint name ({int(named.sum())} of {skeleton.num_keypoints} keypoints)")
        if stand_in:
            summary += (f", from the mean of {'/'.join(src_skel.extra['head_keypoints'])}: "
                        f"{', '.join(stand_in)}")
        summary += f", fresh: {', '.join(fresh) or 'none'}"
    return summary
