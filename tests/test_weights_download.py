"""Released weights on a machine that has only the repository: downloaded from the pinned
URL into the kpose cache, checked against the pinned sha256, resumed after an interruption.
Served here by a local HTTP server on 127.0.0.1 (the machines reach no other host)."""
import hashlib
import http.server
import threading

import numpy as np
import pytest

from kpose.models import official
from kpose.models import tf_pose_release
from kpose.downloads import download
from kpose.models.weights import Release


class _Server:
    """Serves `files` (name -> bytes) with HTTP Range support, counting requests."""

    def __init__(self, files: dict, honour_range: bool = True):
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and honour_range:
                    start, status = int(rng.split("=")[1].rstrip("-")), 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_local_weights(tmp_path, monkeypatch):
    """A machine with only the repository: no $KPOSE_WEIGHTS, no ../shared, an empty cache."""
    monkeypatch.delenv("KPOSE_WEIGHTS", raising=False)
    monkeypatch.setenv("KPOSE_SHARED", str(tmp_path / "no_shared"))
    monkeypatch.setenv("KPOSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


RELEASES = {  # what is served, the table pinning it, its key, the function finding it, the saved name
    "efficientpose": ("efficientpose/EfficientPoseRT.h5", official.OFFICIAL_RELEASES, "rt",
                      official.official_weights_path, "EfficientPoseRT.h5"),
    "tf_pose": ("tf_pose_estimation/openpose_mobilenet_v2_small.pb", tf_pose_release.RELEASES, "small",
                tf_pose_release.released_weights_path, "openpose_mobilenet_v2_small.pb"),
}


@pytest.mark.parametrize("which", sorted(RELEASES))
def test_released_weights_are_downloaded_checked_and_cached(which, shared, no_local_weights, monkeypatch):
    served, table, key, find, saved = RELEASES[which]
    body = (shared / "peers" / served).read_bytes()
    server = _Server({"file": body})
    try:
        pinned = table[key]
        # The pinned checksum is the one of the release file the team holds.
        assert hashlib.sha256(body).hexdigest() == pinned.sha256
        monkeypatch.setitem(table, key, Release(pinned.names, server.url + "file", pinned.sha256))
        path = find(key)
        assert path == no_local_weights / saved and path.read_bytes() == body
        assert not list(no_local_weights.glob("*.part"))
        assert find(key) == path and len(server.requests) == 1  # cached
    finally:
        server.close()


def test_downloaded_official_weights_load(shared, no_local_weights, monkeypatch):
    import kpose

    body = (shared / "peers" / "efficientpose" / "EfficientPoseRT.h5").read_bytes()
    server = _Server({"w.h5": body})
    try:
        pinned = official.OFFICIAL_RELEASES["rt"]
        monkeypatch.setitem(official.OFFICIAL_RELEASES, "rt", Release(pinned.names, server.url + "w.h5", pinned.sha256))
        assert kpose.load(official.official_weights_path("rt")).skeleton.name == "mpii16"
    finally:
        server.close()


def test_a_corrupted_download_names_the_file_and_keeps_nothing(no_local_weights, monkeypatch):
    body = np.random.default_rng(0).bytes(3000)
    server = _Server({"w.h5": body[:-1] + b"x"})
    try:
        monkeypatch.setitem(official.OFFICIAL_RELEASES, "rt",
                            Release(("EfficientPoseRT.h5",), server.url + "w.h5", hashlib.sha256(body).hexdigest()))
        with pytest.raises(ValueError, match=r"EfficientPoseRT\.h5 downloaded from http://127\.0\.0\.1:\d+/w\.h5 "
                                             r"has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}"):
            official.official_weights_path("rt")
        assert not no_local_weights.exists() or not list(no_local_weights.iterdir())
    finally:
        server.close()


@pytest.mark.parametrize("honour_range", [True, False])
def test_an_interrupted_download_resumes(tmp_path, honour_range):
    body = np.random.default_rng(1).bytes(5 << 20)
    server = _Server({"big.bin": body}, honour_range=honour_range)
    try:
        target = tmp_path / "big.bin"
        # What a killed download leaves: the first part of the file beside its target.
        (tmp_path / "big.bin.part").write_bytes(body[:1234567])
        download(server.url + "big.bin", target, hashlib.sha256(body).hexdigest(), progress=False)
        assert target.read_bytes() == body
        assert server.requests == [("/big.bin", "bytes=1234567-")]
        assert not (tmp_path / "big.bin.part").exists()
    finally:
        server.close()
