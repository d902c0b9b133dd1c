"""`kpose demo --check`: open a built demo folder in headless Chromium as a user would
(served by kpose's own server) and see that the page loads its first listed model and
finds poses on an image; compared with PoseModel.predict on the same pixels when the
model is at hand.

What fails the check: the page reports an error or does not finish in time; it loads
another model than models/index.json's first; it is not cross-origin isolated (the
server's COOP/COEP headers); a top-down model gives other than one pose for the whole
image; poses whose keypoints are not the model's (names, count), or non-finite; a
person count shown that differs from the poses returned; a bottom-up model where one
of the page and Python finds people and the other none. The keypoint distance to
Python is reported, not judged (an untrained model's flat maps make argmax arbitrary;
tests/test_web_demo.py holds trained models to 1 px), and so is a fall back from the
backend asked for to another (the page works, slower).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from PIL import Image

from kpose.data.synthetic.scene import render_image
from kpose.deploy.chromium import Chromium, ChromiumError
from kpose.deploy.demo import read_index
from kpose.deploy.webserver import make_server, serving
from kpose.pose_model import PoseModel

# A keypoint counts in the page-vs-Python distance when Python scores it at least this.
CONFIDENT = 0.5
# Beyond this many pixels the distance is flagged (trained models agree within 1 px).
NOTE_PX = 2.0
# What the page reports (window.kposeDemo, the person count it shows).
_RESULT_JS = """(() => { const d = window.kposeDemo || { state: 'no script' }, r = d.result || {};
  const m = r.metadata || {};
  return { state: d.state, error: d.error, modelUrl: r.modelUrl, backend: r.backend, fallbacks: r.fallbacks,
    isolated: r.crossOriginIsolated, poses: r.poses, timings: r.timings, model: m.model, skeleton: m.skeleton,
    people: document.getElementById('people')?.dataset.count }; })()"""


@dataclass
class CheckReport:
    """The check's outcome: one line per thing checked ("ok", "FAIL" or "note")."""

    folder: Path
    lines: list[tuple[str, str]] = field(default_factory=list)
    page: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.lines) and all(kind != "FAIL" for kind, _ in self.lines)

    def add(self, ok: bool, text: str) -> bool:
        self.lines.append(("ok" if ok else "FAIL", text))
        return ok

    def summary(self) -> str:
        body = "\n".join(f"  {kind:4s}  {text}" for kind, text in self.lines)
        return f"kpose demo --check {self.folder}:\n{body}\n{'passed' if self.passed else 'FAILED'}"


def check_png(image: str | Path | None, folder: Path) -> Path:
    """The check's input as a PNG in `folder` (browser and Pillow decode the same pixels):
    `image` converted, or a synthetic scene with people (kpose's embedded data renderer)."""
    png = folder / "check.png"
    if image is None:
        pixels, _ = render_image(np.random.default_rng(0), (256, 320))
        Image.fromarray(pixels).save(png)
    else:
        if not Path(image).is_file():
            raise FileNotFoundError(f"--check-image {image}: no such file")
        Image.open(image).convert("RGB").save(png)
    return png


def _open_page(folder: Path, png: Path, backend: str, timeout: float, report: CheckReport) -> dict | None:
    """The page's result after it ran on `png`, or None (a FAIL line says why)."""
    server = make_server(folder, port=0, mounts={f"/kpose-check/{png.name}": png})
    with serving(server) as base, Chromium() as browser:
        session = browser.open(f"{base}/index.html?" + urlencode({"image": f"/kpose-check/{png.name}",
                                                                  "backend": backend}))
        started, state = time.monotonic(), None
        while time.monotonic() - started < timeout:
            try:
                state = browser.evaluate(session, "window.kposeDemo ? window.kposeDemo.state : 'no script'")
            except ChromiumError:  # no execution context yet: the page is still navigating
                state = None
            if state in ("done", "error"):
                break
            time.sleep(0.25)
        seconds = time.monotonic() - started
        page = browser.evaluate(session, _RESULT_JS)
        page["seconds"] = seconds
        report.page = page
        console = "\n".join(f"        {line}" for line in browser.console[-15:])
    if state != "done":
        why = (f"reported: {page['error']}" if state == "error"
               else f"did not finish in {timeout:.0f} s (state {state!r})")
        report.add(False, f"the page {why}" + (f"; browser console:\n{console}" if console else ""))
        return None
    return page


def _pose_problem(pose: dict, names: list[str], task: str) -> str | None:
    """Why a pose of the page is malformed, or None. JSON has no NaN: the page's non-finite
    numbers arrive as null; a bottom-up model's missing keypoints are null with score 0."""
    if [k["name"] for k in pose["keypoints"]] != names:
        return f"keypoints {[k['name'] for k in pose['keypoints']]} (expected {names})"
    if pose["score"] is None or any(k["score"] is None for k in pose["keypoints"]):
        return "a non-finite score"
    if any((k["x"] is None or k["y"] is None) and (task == "top_down" or k["score"] > 0) for k in pose["keypoints"]):
        return "a keypoint without a finite position"
    return None


def _compare_with_python(page: dict, model: PoseModel, png: Path, report: CheckReport) -> None:
    expected = model.predict(str(png))
    poses = page["poses"]
    if model.task == "bottom_up":
        report.add(bool(poses) == bool(expected),
                   f"PoseModel.predict finds {len(expected)} people, the page {len(poses)}")
        return
    ref = expected[0].keypoints
    js = np.array([[k["x"], k["y"]] for k in poses[0]["keypoints"]], np.float64)
    confident = ref[:, 2] >= CONFIDENT
    if not confident.any():
        report.lines.append(("note", f"no keypoint scores >= {CONFIDENT} in PoseModel.predict (an untrained "
                                     f"model?): positions not compared"))
        return
    worst = float(np.abs(js[confident] - ref[confident, :2]).max())
    report.lines.append(("ok" if worst <= NOTE_PX else "note",
                         f"max |page - PoseModel.predict| {worst:.2f} px over the {int(confident.sum())} "
                         f"keypoints Python scores >= {CONFIDENT}"))


def check_demo(folder: str | Path, model: PoseModel | None = None, image: str | Path | None = None,
               backend: str = "wasm", timeout: float = 180.0) -> CheckReport:
    """Open the demo built in `folder` in headless Chromium on `image` (default: a
    synthetic scene) with TF.js's `backend`, and check what the page does (see the
    module's docstring). `model`: the PoseModel the page serves, for the comparison with
    PoseModel.predict. FileNotFoundError when there is no page, model list or Chromium."""
    folder = Path(folder).resolve()
    index = read_index(folder / "models" / "index.json")
    if not (folder / "index.html").exists() or not index:
        raise FileNotFoundError(f"{folder}: no built page with a model (index.html, models/index.json); "
                                f"build it with kpose demo MODEL --out {folder}")
    report = CheckReport(folder)
    with tempfile.TemporaryDirectory(prefix="kpose-check-") as tmp:
        png = check_png(image, Path(tmp))
        try:
            page = _open_page(folder, png, backend, timeout, report)
        except ChromiumError as e:
            report.add(False, f"headless Chromium failed: {e}")
            return report
        if page is None:
            return report
        meta_model, skeleton, poses = page["model"], page["skeleton"], page["poses"]
        first = index[0]["url"]
        report.add(page["modelUrl"] == first,
                   f"the page loaded {page['modelUrl']} ({meta_model['name']}, {meta_model['task']}) on "
                   f"{page['backend']} and ran it in {page['seconds']:.1f} s"
                   + ("" if page["modelUrl"] == first else f", but models/index.json lists {first} first"))
        if page["fallbacks"]:  # the page works, on another backend than asked for
            report.lines.append(("note", f"asked for {backend}, the page fell back: {'; '.join(page['fallbacks'])}"))
        report.add(bool(page["isolated"]), "cross-origin isolated (the server's COOP/COEP headers)"
                   if page["isolated"] else "not cross-origin isolated: the server sent no COOP/COEP headers")
        names = list(model.skeleton.keypoints) if model is not None else list(skeleton["keypoints"])
        task = meta_model["task"]
        problems = {i: why for i, p in enumerate(poses) if (why := _pose_problem(p, names, task))}
        count_ok = len(poses) == 1 if task == "top_down" else True
        expect = "one expected: top-down on the whole image; " if task == "top_down" else ""
        report.add(count_ok and not problems and str(len(poses)) == page["people"],
                   f"{len(poses)} {'person' if len(poses) == 1 else 'people'} found on "
                   f"{image or 'a synthetic scene'} ({expect}{page['people']} shown), each with the "
                   f"{len(names)} keypoints of {skeleton['name']}"
                   + "".join(f"; pose {i}: {why}" for i, why in problems.items()))
        if model is not None and count_ok and not problems:
            _compare_with_python(page, model, png, report)
    return report
