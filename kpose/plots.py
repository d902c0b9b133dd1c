"""Pictures a person would rather look at: loss curves and predicted skeletons."""
from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kpose.data.images import load_image


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_pose(ax, keypoints: np.ndarray, limbs, threshold: float = 0.2, color="lime") -> None:
    """Draw one skeleton (keypoints [K, 3] = x, y, score) on a matplotlib axis."""
    ok = keypoints[:, 2] > threshold
    for a, b in limbs:
        if ok[a] and ok[b]:
            ax.plot(keypoints[[a, b], 0], keypoints[[a, b], 1], "-", color=color, lw=2)
    ax.scatter(keypoints[ok, 0], keypoints[ok, 1], s=12, c="red", zorder=3)


def _track_color(track_id) -> tuple[int, int, int]:
    if track_id is None:
        return (0, 255, 0)
    hue = (int(track_id) * 0.618034) % 1.0   # golden-ratio steps: neighbouring ids differ
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 1.0))


def annotate_image(image: np.ndarray, poses, limbs, threshold: float = 0.2) -> np.ndarray:
    """A copy of an RGB image with every pose drawn (limbs, keypoints, and the track id when
    set), for video frames, where matplotlib per frame would be too slow."""
    img = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for pose in poses:
        kp = np.asarray(pose.keypoints)
        ok = kp[:, 2] > threshold
        color = _track_color(getattr(pose, "track_id", None))
        for a, b in limbs:
            if ok[a] and ok[b]:
                draw.line([tuple(kp[a, :2]), tuple(kp[b, :2])], fill=color, width=width)
        for x, y, _ in kp[ok]:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=(255, 0, 0))
        if ok.any() and getattr(pose, "track_id", None) is not None:
            x0, y0 = kp[ok, 0].min(), kp[ok, 1].min()
            draw.text((x0, max(y0 - 12, 0)), f"#{pose.track_id}", fill=color)
    return np.asarray(img)


def loss_curves(history_csv: str | Path, out_png: str | Path,
                validation_csv: str | Path | None = None) -> Path | None:
    """Training losses per pass (log scale) and validation metrics, per epoch."""
    path = Path(history_csv)
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    if not rows:
        return None
    vpath = Path(validation_csv) if validation_csv else None
    vrows = list(csv.DictReader(vpath.open())) if vpath and vpath.exists() else []
    plt = _plt()
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in rows[0]:
        if key == "epoch" or key.startswith("val_") or key == "lr":
            continue
        ax1.plot(epochs, [float(r[key]) for r in rows], label=key, lw=2 if key == "loss" else 1)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss")
    ax1.legend(fontsize=7)
    for key in ("AP", "AP50", "AR", "PCKh@0.5", "PCKh@0.1"):
        if vrows and key in vrows[0]:
            ax2.plot([int(r["epoch"]) + 1 for r in vrows], [float(r[key]) for r in vrows], "o-", label=key)
    ax2.set_ylim(0, 1)
    ax2.set_xlim(0.5, max(epochs) + 0.5)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation")
    if vrows:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def prediction_grid(model, instances, out_png: str | Path, n: int = 12, seed: int = 0,
                    flip_test: bool = False) -> Path:
    """Validation images (around each person box) with predicted (green) and true (blue) skeletons."""

    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(instances), size=min(n, len(instances)), replace=False))
    sub = instances.select(idx)
    pred = model.predict_instances(sub, batch_size=len(sub), flip_test=flip_test)
    cols = 4
    rows = -(-len(sub) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    limbs = instances.skeleton.limbs
    for ax, i in zip(axes.ravel(), range(len(sub))):
        img = load_image(str(sub.image_paths[i]), apply_exif=False)
        ax.imshow(img)
        gt = sub.keypoints[i].copy()
        gt[:, 2] = (gt[:, 2] > 0).astype(np.float32)
        draw_pose(ax, gt, limbs, threshold=0.5, color="deepskyblue")
        draw_pose(ax, pred[i], limbs)
        x, y, w, h = sub.bboxes[i]
        pad = 0.15 * max(w, h)
        ax.set_xlim(x - pad, x + w + pad)
        ax.set_ylim(y + h + pad, y - pad)
    fig.suptitle("predicted (green) vs ground truth (blue)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)


def image_grid(model, records, out_png: str | Path, n: int = 8, seed: int = 0) -> Path:
    """Whole validation images with every person a bottom-up model finds (green) and the
    annotated people (blue)."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(records), size=min(n, len(records)), replace=False))
    cols = 4
    rows = -(-len(idx) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx):
        img = load_image(str(records.image_paths[i]), apply_exif=False)
        ax.imshow(img)
        for person in records.keypoints[i][: int(records.num_people[i])]:
            gt = person.copy()
            gt[:, 2] = (gt[:, 2] > 0).astype(np.float32)
            draw_pose(ax, gt, records.skeleton.limbs, threshold=0.5, color="deepskyblue")
        for pose in model.predict(str(records.image_paths[i])):
            draw_pose(ax, pose.keypoints, model.skeleton.limbs)
    fig.suptitle("found (green) vs annotated (blue)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)

