"""Where released weights come from: one search order for every family's `init: official`,
and, when no folder holds the file, a download from its pinned upstream URL, checked
against its sha256 before anything reads it."""
from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from kpose.data.images import default_cache_dir
from kpose.downloads import download


@dataclass(frozen=True)
class Release:
    """One released weights file.

    names: the file names looked for locally (the first is the name it is saved under
    when downloaded). url: a download URL pinned to a commit. sha256: of the file's bytes.
    """

    names: tuple[str, ...]
    url: str
    sha256: str


def weights_dirs(peer: str) -> list[Path]:
    """Folders searched for a release's files, in order.

    $KPOSE_WEIGHTS, then the team's shared folder ($KPOSE_SHARED, else ../shared from
    the working directory) under peers/<peer>, then the kpose cache's weights/ folder
    ($KPOSE_CACHE/weights, else ~/.cache/kpose/weights), where downloads go.
    """
    dirs = []
    if os.environ.get("KPOSE_WEIGHTS"):
        dirs.append(Path(os.environ["KPOSE_WEIGHTS"]))
    shared = Path(os.environ.get("KPOSE_SHARED", Path.cwd().parent / "shared"))
    dirs += [shared / "peers" / peer, download_dir()]
    return dirs


def download_dir() -> Path:
    """Where downloaded weights are kept."""
    return default_cache_dir() / "weights"


def find_weights(release: Release, peer: str, what: str, page: str) -> Path:
    """The first of `release.names` found in weights_dirs(peer), else the file downloaded
    from release.url into download_dir() and checked against release.sha256.

    Offline: FileNotFoundError naming the URL, the folders searched and the manual step.
    A download whose checksum differs: ValueError naming the file, both checksums and the fix.
    """
    dirs = weights_dirs(peer)
    for d in dirs:
        for name in release.names:
            if (d / name).is_file():
                return d / name
    target = download_dir() / release.names[0]
    try:
        return download(release.url, target, release.sha256, what)
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(
            f"init: official needs {' or '.join(release.names)} ({what}); not found in "
            f"{', '.join(str(d) for d in dirs)}, and downloading {release.url} failed ({e}). "
            f"Download it by hand (from {page}) into one of those folders (or set $KPOSE_WEIGHTS to "
            f"its folder), or train from random weights with --set init=null") from e
