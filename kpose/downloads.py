"""Downloads that survive a flaky network and never hand over a corrupt file: fetched into
`<target>.part`, resumed with an HTTP Range request after an interruption, size and
checksum verified, then moved into place. Used for released weights and named datasets."""
from __future__ import annotations

import hashlib
from pathlib import Path
import urllib.request

from tqdm import tqdm

_CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (`algorithm`: any hashlib name, e.g. sha256, md5)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, target: Path, sha256: str | None = None, what: str = "", progress: bool = True,
             *, md5: str | None = None, size: int | None = None) -> Path:
    """Fetch `url` into `target` (atomically, resuming a partial `target.part` with an HTTP
    Range request) and check its size and checksum (sha256, or md5 where upstream publishes
    only that); returns target.

    A size or checksum mismatch removes the partial file and raises ValueError naming the
    file, both values and the fix.
    """
    if sha256 is None and md5 is None:
        raise ValueError(f"download of {url}: give the sha256 (or md5) it must have")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()  # longer than the file can be: not a prefix of it
        have = 0
    if size is None or have < size:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and response.status == 206
            if not resumed:
                have = 0  # the server sent the whole file: start over
            total = response.length + have if response.length is not None else size
            with open(part, "ab" if resumed else "wb") as f, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True, disable=not progress,
                         desc=f"kpose: downloading {target.name}") as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
    what = what or "a pinned release"
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink()
        raise ValueError(f"{target.name} downloaded from {url} has {got_size} bytes, expected {size} ({what}): "
                         f"the download is incomplete or the upstream file changed. Nothing was kept; try again, "
                         f"or put a verified copy in {target.parent}")
    algorithm, expected = ("sha256", sha256) if sha256 is not None else ("md5", md5)
    got = file_digest(part, algorithm)
    if got != expected:
        part.unlink()
        raise ValueError(f"{target.name} downloaded from {url} has {algorithm} {got}, expected {expected} "
                         f"({what}): the download is corrupt or the upstream file changed. Nothing was kept; "
                         f"try again, or put a verified copy in {target.parent}")
    part.replace(target)
    return target
