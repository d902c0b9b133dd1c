"""A contact sheet of annotated images, for looking at what the generator made.

Drawn with Pillow (no plotting library): the data package stays light to import.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kpose.skeletons import COCO17

_LEFT, _RIGHT, _CENTRE = (255, 140, 0), (40, 120, 255), (255, 255, 255)
_BOX = (255, 230, 0)
_TITLE_H = 14
_LEGEND = "orange = person's left, blue = right; hollow = occluded (v=1)"


def _colour(names: tuple[str, ...], *idx: int) -> tuple[int, int, int]:
    if any(names[i].startswith("left") for i in idx):
        return _LEFT
    if any(names[i].startswith("right") for i in idx):
        return _RIGHT
    return _CENTRE


def _draw_annotation(draw: ImageDraw.ImageDraw, ann: dict, ox: int, oy: int) -> None:
    """One person: box (COCO edge frame -> covered pixels), limbs, joints (hollow when v=1)."""
    names = COCO17.keypoints
    kp = np.asarray(ann["keypoints"], float).reshape(-1, 3) + [ox, oy, 0]
    x, y, bw, bh = ann["bbox"]
    draw.rectangle([ox + x, oy + y, ox + x + bw - 1, oy + y + bh - 1], outline=_BOX)
    for i, j in COCO17.limbs:
        if kp[i, 2] > 0 and kp[j, 2] > 0:
            draw.line([tuple(kp[i, :2]), tuple(kp[j, :2])], fill=_colour(names, i, j), width=2)
    for i, (px, py, v) in enumerate(kp):
        if v > 0:
            c = _colour(names, i)
            draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], outline=c, fill=c if v == 2 else None)


def preview(ann_path: str | Path, out_png: str | Path, n: int = 8, seed: int = 0,
            image_dir: str | Path | None = None) -> Path:
    """Save a grid of n random images with their skeletons and boxes (v=1 joints hollow)."""
    ann_path = Path(ann_path)
    data = json.loads(ann_path.read_text())
    if image_dir is None:
        split = ann_path.stem.replace("person_keypoints_", "")
        image_dir = ann_path.parent.parent / split
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    imgs = data["images"]
    pick = np.random.default_rng(seed).choice(len(imgs), size=min(n, len(imgs)), replace=False)
    cols = max(min(4, len(pick)), 1)
    rows = max(int(np.ceil(len(pick) / cols)), 1)
    cell_w = max([int(imgs[k]["width"]) for k in pick] + [256])
    cell_h = max([int(imgs[k]["height"]) for k in pick] + [256]) + _TITLE_H
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h + _TITLE_H), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 1), _LEGEND, fill=_CENTRE)
    for slot, k in enumerate(pick):
        info = imgs[k]
        ox, oy = (slot % cols) * cell_w, (slot // cols) * cell_h + _TITLE_H
        anns = by_image.get(info["id"], [])
        with Image.open(Path(image_dir) / info["file_name"]) as im:
            sheet.paste(im.convert("RGB"), (ox, oy + _TITLE_H))
        draw.text((ox + 4, oy + 1), f"{info['file_name']}  ({len(anns)} ann)", fill=_CENTRE)
        for a in anns:
            _draw_annotation(draw, a, ox, oy + _TITLE_H)
    out_png = Path(out_png)
    sheet.save(out_png)
    return out_png
