"""Video files in and out: RGB frames with their timestamps in milliseconds (imageio + PyAV,
the optional `kpose[video]` extra)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from kpose.data.images import DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _iio():
    try:
        import imageio.v3 as iio
        import av  # noqa: F401  (the plugin imageio reads and writes video with)
    except ImportError:
        raise DataError("reading and writing video needs imageio and PyAV. Fix: pip install 'kpose[video]' "
                        "(or pip install imageio av)") from None
    return iio


def video_fps(path: str | os.PathLike) -> float:
    """Frames per second from the file's metadata."""
    iio = _iio()
    fps = iio.immeta(str(path), plugin="pyav").get("fps")
    if not fps or not fps > 0:
        raise DataError(f"{path}: the video states no frame rate; re-encode it (e.g. ffmpeg -r 30)")
    return float(fps)


def video_frame_count(path: str | os.PathLike) -> int | None:
    """Frames the metadata announces (duration x frame rate), for a progress bar's total; None
    when it states no duration. An estimate: read_video yields what the file really holds."""
    meta = _iio().immeta(str(path), plugin="pyav")
    duration, fps = meta.get("duration"), meta.get("fps")
    if not duration or not fps or not duration > 0 or not fps > 0:
        return None
    return max(int(round(float(duration) * float(fps))), 1)


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """(frame [H, W, 3] uint8 RGB, timestamp in ms) for each frame, timestamps from the frame rate."""
    if not Path(path).is_file():
        raise DataError(f"{path}: video not found")
    iio = _iio()
    fps = video_fps(path)
    for i, frame in enumerate(iio.imiter(str(path), plugin="pyav")):
        if max_frames is not None and i >= max_frames:
            return
        yield np.ascontiguousarray(frame[..., :3]), 1000.0 * i / fps


def write_video(path: str | os.PathLike, frames, fps: float) -> Path:
    """Write RGB uint8 frames as an H.264 MP4 (sizes padded to even numbers, as H.264 needs)."""
    iio = _iio()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with iio.imopen(str(path), "w", plugin="pyav") as out:
        out.init_video_stream("libx264", fps=fps)
        for frame in frames:
            h, w = frame.shape[:2]
            out.write_frame(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0))))
    return path
