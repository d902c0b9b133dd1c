"""Where released weights are looked for: one search order for every family's `init: official`."""
from __future__ import annotations

import os
from pathlib import Path


def weights_dirs(peer: str) -> list[Path]:
    """Folders searched for a release's files, in order.

    $KPOSE_WEIGHTS, then the team's shared folder ($KPOSE_SHARED, else ../shared from
    the working directory) under peers/<peer>, then ~/.cache/kpose/weights.
    """
    dirs = []
    if os.environ.get("KPOSE_WEIGHTS"):
        dirs.append(Path(os.environ["KPOSE_WEIGHTS"]))
    shared = Path(os.environ.get("KPOSE_SHARED", Path.cwd().parent / "shared"))
    dirs += [shared / "peers" / peer, Path.home() / ".cache" / "kpose" / "weights"]
    return dirs


def find_weights(names: tuple[str, ...], peer: str, what: str, url: str) -> Path:
    """The first of `names` found in weights_dirs(peer); FileNotFoundError with the fix."""
    dirs = weights_dirs(peer)
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    raise FileNotFoundError(
        f"init: official needs {' or '.join(names)} ({what}); searched {', '.join(str(d) for d in dirs)}. "
        f"Download it from {url} into one of them (or set $KPOSE_WEIGHTS to its folder), or train "
        f"from random weights with --set init=null")
