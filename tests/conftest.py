"""Shared fixtures: where ../shared is, and a small synthetic dataset made once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Peak memory of one test process (TF, converters, a browser or a training run at a time):
# `-n auto` starts no more workers than the machine's memory holds at this much each.
WORKER_MEMORY_GB = 6


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pytest.ini): one worker per core, fewer where memory is short."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # MemAvailable counts the page cache the kernel would give back
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return cores
    return max(1, min(cores, int(kb / 2**20 // WORKER_MEMORY_GB)))


def shared_dir() -> Path | None:
    """KPOSE_SHARED, else ../shared beside the repository; None when absent."""
    p = Path(os.environ.get("KPOSE_SHARED", REPO.parent / "shared"))
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    p = shared_dir()
    if p is None:
        pytest.skip("../shared (or $KPOSE_SHARED) is absent: real-data tests skipped")
    return p


def no_official_init() -> dict:
    """Recipe overrides for training tests: the packaged recipe starts from the official
    EfficientPose weights (init: official), found in ../shared; without it, random init
    (looked up locally: tests never download)."""
    from kpose.models.official import OFFICIAL_RELEASES
    from kpose.models.weights import weights_dirs

    names = OFFICIAL_RELEASES["rt"].names
    found = any((d / n).is_file() for d in weights_dirs("efficientpose") for n in names)
    return {} if found else {"init": None}


@pytest.fixture(scope="module", autouse=True)
def _release_models_after_each_module():
    """Free each test module's Keras graphs and models: each worker process runs many
    modules, and converters' and module fixtures' models otherwise pile up."""
    yield
    import gc

    from kpose._tf import keras

    keras.backend.clear_session()
    gc.collect()

