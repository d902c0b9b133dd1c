"""A static file server for the built web demo (Python's http.server, no node): it sends
COOP/COEP headers so the page is cross-origin isolated and TF.js's wasm backend may use
threads (SharedArrayBuffer), as web_demo/tools/serve.mjs does.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-cache",
}


class DemoHandler(SimpleHTTPRequestHandler):
    """Files of `directory`, plus single files mounted at URL paths; isolation headers on
    every answer; quiet unless `log`."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
                      ".map": "application/json", ".bin": "application/octet-stream"}

    def __init__(self, *args, mounts: dict[str, Path], log: bool, **kwargs):
        self.mounts, self.log = mounts, log
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean in self.mounts:
            return str(self.mounts[clean])
        return super().translate_path(path)

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if self.log:
            super().log_message(format, *args)


def make_server(root: str | Path, port: int = 8080, host: str = "127.0.0.1",
                mounts: dict[str, str | Path] | None = None, log: bool = False) -> ThreadingHTTPServer:
    """A server of `root` on host:port (port 0: a free one; see .server_address), with
    `mounts` {"/url/path.png": file} served beside it. Call serve_forever(), or use
    serving()."""
    root = Path(root).resolve()
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"{root} has no index.html: build the page first "
                                f"(kpose demo MODEL --build-only --out {root})")
    handler = partial(DemoHandler, directory=str(root), log=log,
                      mounts={url: Path(f).resolve() for url, f in (mounts or {}).items()})
    return ThreadingHTTPServer((host, port), handler)


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """`server` answering in a background thread while the block runs; yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
