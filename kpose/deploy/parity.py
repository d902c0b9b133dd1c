"""Parity of an exported model with the Keras model: what is measured, and the gates.

Top-down models: on person crops, the largest absolute difference of the raw
heatmaps and the distance between keypoints decoded (with the model's codec) from
the two outputs, keypoint by keypoint.

Bottom-up models: on whole images fitted to the input, the largest absolute
difference of each raw output (heatmaps and pafs or limb_heatmaps), then the people
decoded by the model's codec (PAF or limb heatmap grouping) from each: the number of
people per image, and, after matching the exported model's people to the Keras
model's (`match_people`), the distance of each confident reference keypoint to its
counterpart. A reference keypoint without
one (its person unmatched, or the keypoint not found) counts as infinitely far, so
a median over them fails when most of them are lost.

Tolerances (TOLERANCES): float formats by raw output (fp32 1e-4, fp16 1e-2) and,
bottom-up, the same number of people on every image; quantised formats by decoded
keypoints (int8 and qat: the median distance over confidently detected keypoints
must be at most one cell of the detection grid).
"""
from __future__ import annotations

import numpy as np

from kpose._tf import keras
from kpose.codecs import KEYPOINT_SCORE_THRESHOLD
from kpose.deploy import graph
from kpose.models import BOTTOM_UP

# Per precision: limit on raw max|delta| (None = not gated), on the keypoint distance
# in input pixels (None = not gated; "cell": one cell of the network's detection grid,
# kpose.deploy.graph.detection_stride, the resolution the maps are computed at), and
# whether a bottom-up export must find the same number of people on every image.
# Keypoint distances are taken over keypoints the Keras model finds with score >=
# KEYPOINT_SCORE_MIN, whose peak is well defined; the median is gated (a handful of
# ambiguous low peaks may jump).
TOLERANCES = {
    "fp32": {"raw": 1e-4, "keypoint_median": None, "same_people": True},
    "fp16": {"raw": 1e-2, "keypoint_median": None, "same_people": True},
    "float16": {"raw": 1e-2, "keypoint_median": None, "same_people": True},   # TF.js float16 weights
    "int8": {"raw": None, "keypoint_median": "cell", "same_people": False},
    "qat": {"raw": None, "keypoint_median": "cell", "same_people": False},
    "uint8": {"raw": None, "keypoint_median": "cell", "same_people": False},  # TF.js uint8 weights
}
KEYPOINT_SCORE_MIN = KEYPOINT_SCORE_THRESHOLD


def compare(model, exported_output: np.ndarray, reference: np.ndarray) -> dict:
    """Raw and decoded differences between an exported top-down model's heatmaps and Keras's."""
    codec = model.codec
    ref_kp = codec.batch_decode(reference)
    exp_kp = codec.batch_decode(exported_output)
    dist = np.linalg.norm(ref_kp[..., :2] - exp_kp[..., :2], axis=-1)
    confident = ref_kp[..., 2] >= KEYPOINT_SCORE_MIN
    d = dist[confident] if confident.any() else dist.ravel()
    return {
        "max_abs_diff": float(np.abs(exported_output - reference).max()),
        "mean_abs_diff": float(np.abs(exported_output - reference).mean()),
        "keypoint_median_px": float(np.median(d)),
        "keypoint_p90_px": float(np.percentile(d, 90)),
        "keypoint_max_px": float(d.max()),
        "keypoints_compared": int(d.size),
    }


def match_people(reference: np.ndarray, exported: np.ndarray) -> list[tuple[int, int]]:
    """(reference person, exported person) pairs for two decodings [N, K, 3] of one image.

    Cost: the mean distance over keypoints both people have (score > 0); pairs sharing
    none never match. Greedy by increasing cost (ties by index): people of one image
    are few and far apart compared with a decoding difference.
    """
    if not len(reference) or not len(exported):
        return []
    both = (reference[:, None, :, 2] > 0) & (exported[None, :, :, 2] > 0)           # [R, E, K]
    dist = np.linalg.norm(reference[:, None, :, :2] - exported[None, :, :, :2], axis=-1)
    shared = both.sum(-1)
    cost = np.where(shared > 0, (dist * both).sum(-1) / np.maximum(shared, 1), np.inf)
    pairs, used_r, used_e = [], set(), set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        r, e = np.unravel_index(flat, cost.shape)
        if not np.isfinite(cost[r, e]):
            break
        if r not in used_r and e not in used_e:
            pairs.append((int(r), int(e)))
            used_r.add(r)
            used_e.add(e)
    return pairs


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def compare_bottom_up(model, exported: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    """Raw differences of both outputs and decoded people, exported vs Keras, over a batch
    of whole-image inputs: outputs {"heatmaps": [B, h, w, K], "pafs": [B, h, w, 2L]} or, with a
    limb heatmap codec, {"heatmaps": ..., "limb_heatmaps": [B, h, w, L]}."""
    names = graph.output_names(model)
    out: dict = {}
    for n in names:
        d = np.abs(np.asarray(exported[n], np.float32) - np.asarray(reference[n], np.float32))
        out[f"max_abs_diff_{n}"] = float(d.max())
        out[f"mean_abs_diff_{n}"] = float(d.mean())
    out["max_abs_diff"] = max(out[f"max_abs_diff_{n}"] for n in names)
    out["mean_abs_diff"] = max(out[f"mean_abs_diff_{n}"] for n in names)
    codec = model.codec
    dists, missing, people_ref, people_exp, differ = [], 0, [], [], 0
    for i in range(len(reference[names[0]])):
        ref, _ = codec.decode(reference[names[0]][i], reference[names[1]][i])
        got, _ = codec.decode(exported[names[0]][i], exported[names[1]][i])
        people_ref.append(len(ref))
        people_exp.append(len(got))
        differ += len(ref) != len(got)
        partner = dict(match_people(ref, got))
        for r in range(len(ref)):
            confident = ref[r, :, 2] >= KEYPOINT_SCORE_MIN
            if r not in partner:
                missing += int(confident.sum())
                continue
            found = confident & (got[partner[r], :, 2] > 0)
            dists.extend(np.linalg.norm(ref[r, found, :2] - got[partner[r], found, :2], axis=-1).tolist())
            missing += int((confident & ~found).sum())
    d = np.array(dists + [np.inf] * missing)
    out.update({
        "people_reference": people_ref, "people_exported": people_exp,
        "images_with_other_people_count": int(differ),
        "keypoints_compared": int(d.size), "keypoints_missing": int(missing),
        "keypoint_median_px": _finite_or_none(np.median(d)) if d.size else 0.0,
        "keypoint_p90_px": _finite_or_none(np.percentile(d, 90)) if d.size else 0.0,
        "keypoint_max_px": _finite_or_none(d.max()) if d.size else 0.0,
    })
    return out


def fp16_weight_effect(model, inputs: np.ndarray, reference: dict[str, np.ndarray]) -> float:
    """Max |delta| of the Keras model's own outputs when its weights are rounded to float16:
    the part of an fp16 export's difference that fp16 weights imply by themselves (a model
    whose per-image normalisations amplify small changes can exceed the fp16 tolerance
    through this alone)."""
    net = graph.export_network(model)
    rounded = keras.models.clone_model(net)
    rounded.set_weights([w.astype(np.float16).astype(np.float32) for w in net.get_weights()])
    names = graph.output_names(model)
    worst = 0.0
    for i, x in enumerate(inputs):
        out = rounded(x[None], training=False)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        for n, o in zip(names, out[-len(names):]):
            worst = max(worst, float(np.abs(np.asarray(o)[0] - reference[n][i]).max()))
    return worst


def limits(model, precision: str) -> dict:
    """The tolerances of `precision` with "cell" resolved to the model's detection stride."""
    tol = dict(TOLERANCES[precision])
    if tol["keypoint_median"] == "cell":
        tol["keypoint_median"] = float(graph.detection_stride(model))
    if model.task != BOTTOM_UP:
        tol.pop("same_people")
    return tol


def failures(entry: dict, tol: dict) -> list[str]:
    """Why a measured format entry fails its tolerances (empty: it passes)."""
    fails = []
    if tol["raw"] is not None and entry["max_abs_diff"] > tol["raw"]:
        fails.append(f"max|d| {entry['max_abs_diff']:.2e} > {tol['raw']:.0e}")
    if tol.get("same_people") and entry.get("images_with_other_people_count"):
        fails.append(f"other number of people on {entry['images_with_other_people_count']} image(s)")
    if tol["keypoint_median"] is not None:
        median = entry["keypoint_median_px"]
        if median is None:
            fails.append(f"median keypoint distance: {entry['keypoints_missing']} of "
                         f"{entry['keypoints_compared']} reference keypoints not found")
        elif median > tol["keypoint_median"]:
            fails.append(f"median keypoint distance {median:.2f} px > {tol['keypoint_median']:.2f} px")
    if entry.get("gpu_delegate_compatible") is False or entry.get("forbidden_ops"):
        fails.append("not GPU-delegate clean")
    return fails


def _num(value, fmt: str) -> str:
    return "inf" if value is None else format(value, fmt)


def parity_markdown(report: dict) -> str:
    """The parity report as a Markdown table (parity.md)."""
    bottom_up = report.get("task") == BOTTOM_UP
    # The limb output beside the heatmaps: pafs or limb_heatmaps (reports before the key: pafs).
    limbs = report.get("outputs", [graph.OUTPUT_NAME, graph.PAF_OUTPUT_NAME])[-1]
    what = "whole images fitted to the input" if bottom_up else "crops"
    lines = [f"# Parity report: {report['model']}", "",
             f"{report.get('num_inputs', 0)} {what} from {report.get('images')}; reference = the Keras model. "
             f"Keypoint distances in input pixels over keypoints with Keras score >= {KEYPOINT_SCORE_MIN}"
             + ("; people matched first, a reference keypoint not found counts as infinitely far." if bottom_up
                else "."), ""]
    if bottom_up:
        lines += [f"| format | precision | size | max abs diff heatmaps | max abs diff {limbs} | people (Keras / "
                  "export) | median kp dist | p90 kp dist | GPU delegate | status |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
    else:
        lines += ["| format | precision | size | max abs diff | median kp dist | p90 kp dist | GPU delegate | status |",
                  "|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for e in report["formats"]:
        gpu = {True: "clean", False: "INCOMPATIBLE", None: "-"}[e.get("gpu_delegate_compatible")]
        head = f"| {e['format']} | {e['precision']} | {e['bytes'] / 1e6:.2f} MB | "
        tail = (f"{_num(e.get('keypoint_median_px', nan), '.3f')} | {_num(e.get('keypoint_p90_px', nan), '.3f')} | "
                f"{gpu} | {e.get('status', '-')} |")
        if bottom_up:
            people = (f"{sum(e['people_reference'])} / {sum(e['people_exported'])}"
                      if "people_reference" in e else "-")
            lines.append(head + f"{e.get('max_abs_diff_heatmaps', nan):.2e} | "
                         f"{e.get(f'max_abs_diff_{limbs}', nan):.2e} | {people} | " + tail)
        else:
            lines.append(head + f"{e.get('max_abs_diff', nan):.2e} | " + tail)
    if report.get("fp16_weights_max_abs_diff") is not None:
        lines += ["", f"The Keras model itself, its weights rounded to float16, moves by max abs diff "
                      f"{report['fp16_weights_max_abs_diff']:.2e}: what fp16 weights imply before any converter."]
    lines += ["", "PASSED" if report["passed"] else "FAILED", ""]
    return "\n".join(lines)
