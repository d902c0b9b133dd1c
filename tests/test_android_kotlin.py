"""export/android/: the Kotlin decoders, tracker and metadata reader against the Python reference.

* the core (export/android/Kpose{Metadata,Core,Paf,LimbHeatmap,Tracking}.kt) is plain Kotlin: no Android,
  LiteRT or org.json import, so it compiles and runs here;
* kotlinc compiles it with export/android/test/GoldenTest.kt, and the Android loader
  KposePose.kt against compile-time stubs of the Android / LiteRT APIs it calls
  (export/android/test/stubs/), so the loader is type-checked against the core;
* the jar runs on web_demo/test/golden, the vectors the Python reference writes and the JS
  ports are tested against: heatmap + DARK decode, PAF grouping and limb heatmap grouping
  (template and real coco_mini people; positions within 1e-4 px, identical peaks, candidates,
  people and order), crop geometry and the top-down / bottom-up
  pipelines, tracking traces (identical ids, smoothed keypoints within 1e-4 px, for every
  configuration, defaults equal to Python's), top-down video (kpose/person_boxes.py's constants,
  pose_boxes and Tracker.distinct cases, and a PoseModel.track trace run through trackTopDown +
  topDownPoses, KposePose.track's code, with a network replaying Python's outputs: the same crop
  boxes, ids, keypoints within 1e-4 px), and the exported metadata (K, names, limbs
  read from it; codec.type picks the PAF or limb heatmap decoder, which decodes a golden case;
  broken metadata and unknown codec types rejected with the file and field named).

Needs Debian's kotlin (`apt-get install kotlin`: kotlinc 1.3) and java; skipped without them
unless KPOSE_REQUIRE_KOTLIN=1 (CI), which turns their absence into a failure.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANDROID = REPO / "export" / "android"
GOLDEN = REPO / "web_demo" / "test" / "golden"
LOADER = "KposePose.kt"
REQUIRE_KOTLIN = os.environ.get("KPOSE_REQUIRE_KOTLIN") == "1"


def _missing(what: str):
    if REQUIRE_KOTLIN:
        pytest.fail(f"{what} (KPOSE_REQUIRE_KOTLIN=1)")
    pytest.skip(what)


def test_core_is_plain_kotlin():
    core = sorted(p for p in ANDROID.glob("*.kt") if p.name != LOADER)
    assert len(core) >= 3, f"expected the Kotlin core beside {LOADER}, found {[p.name for p in core]}"
    for path in core:
        text = path.read_text()
        platform = re.findall(r"^import\s+((?:android|androidx|org\.tensorflow|org\.json|com\.google)\.\S+)", text, re.M)
        assert not platform, f"{path.relative_to(REPO)} imports {platform}: keep platform code in {LOADER}"
        assert text.count("\n") < 450, f"{path.relative_to(REPO)} has grown past ~400 lines: split it"


def test_kotlin_matches_python_golden_vectors(tmp_path):
    kotlinc, java = shutil.which("kotlinc"), shutil.which("java")
    if kotlinc is None or java is None:
        _missing("kotlinc/java not on PATH (Debian: apt-get install kotlin)")
    sources = [*sorted(ANDROID.glob("*.kt")), *sorted((ANDROID / "test").glob("*.kt")),
               *sorted((ANDROID / "test" / "stubs").glob("*.kt"))]
    jar = tmp_path / "kpose_golden.jar"
    start = time.monotonic()
    built = subprocess.run([kotlinc, *map(str, sources), "-include-runtime", "-d", str(jar)],
                           capture_output=True, text=True, timeout=900)
    compiled = time.monotonic() - start
    messages = [line for line in (built.stdout + built.stderr).splitlines() if re.search(r"\.kt:\d+:\d+: ", line)]
    assert built.returncode == 0 and jar.exists(), "kotlinc failed:\n" + "\n".join(messages or [built.stderr[-6000:]])
    start = time.monotonic()
    ran = subprocess.run([java, "-jar", str(jar), str(GOLDEN)], capture_output=True, text=True, timeout=300)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 0 and re.search(r"# \d+ checks, 0 mismatches", out), \
        f"Kotlin differs from the Python reference (exit {ran.returncode}):\n{out[-6000:]}"
    print(f"kotlinc {compiled:.0f} s, run {time.monotonic() - start:.1f} s; {len(messages)} compiler warnings")
    print("\n".join(line for line in out.splitlines() if line.startswith("#")))
