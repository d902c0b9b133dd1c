"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe,
the transport Playwright uses): no driver package and no node, only the browser.

    with Chromium() as browser:
        page = browser.open("http://127.0.0.1:8080/index.html")
        state = browser.evaluate(page, "document.body.dataset.state")

The browser is $CHROMIUM, else the first of chromium, chromium-browser, google-chrome on
PATH (never downloaded). Linux/macOS only (fds 3 and 4 carry the protocol).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Containers have no GPU: WebGL runs on SwiftShader (software). --no-sandbox as Playwright
# launches it (root in a container has no user namespace for the sandbox).
FLAGS = ("--headless=new", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
         "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist")


class ChromiumError(RuntimeError):
    """The browser could not start, died, or did not answer in time."""


def find_chromium() -> str:
    """The browser's path: $CHROMIUM, else a Chromium or Chrome on PATH; FileNotFoundError
    naming what was searched and how to install one."""
    env = os.environ.get("CHROMIUM")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"CHROMIUM={env}: no such file; point it at a Chromium or Chrome binary")
        return env
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(f"no Chromium found ($CHROMIUM unset; none of {', '.join(BROWSERS)} on PATH): "
                            f"install one (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM=/path/to/chrome")


def _high_fd(fd: int) -> int:
    """`fd` moved to a number >= 10 (close-on-exec), so dup2 onto 3 and 4 cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless browser with a fresh profile; a context manager (closes the browser)."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        self.timeout = timeout
        self.console: list[str] = []  # console messages and uncaught exceptions of the pages
        self._next_id = 0
        self._buffer = b""
        self._pid: int | None = None

    def __enter__(self) -> "Chromium":
        self._profile = tempfile.TemporaryDirectory(prefix="kpose-chromium-")
        self._log = Path(self._profile.name) / "chromium.log"
        to_r, to_w = (_high_fd(fd) for fd in os.pipe())
        from_r, from_w = (_high_fd(fd) for fd in os.pipe())
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, str(self._log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2), (os.POSIX_SPAWN_DUP2, to_r, 3), (os.POSIX_SPAWN_DUP2, from_w, 4)]
        argv = [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        try:
            self._pid = os.posix_spawn(self.executable, argv, os.environ, file_actions=actions, setsid=True)
        except OSError as e:
            self._profile.cleanup()
            raise ChromiumError(f"{self.executable}: could not start ({e})") from None
        finally:
            os.close(to_r)
            os.close(from_w)
        self._write, self._read = to_w, from_r
        try:
            self.call("Browser.getVersion")
        except ChromiumError:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the browser's own stderr (why it failed to start or crashed)."""
        try:
            return self._log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise ChromiumError(f"{self.executable} did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise ChromiumError(f"{self.executable} exited; its log ends:\n{self.log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _event(self, message: dict) -> None:
        params = message.get("params", {})
        if message.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
        elif message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one protocol command and return its result; events met on the way are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ChromiumError(f"{method}: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            self._event(reply)

    def open(self, url: str) -> str:
        """Open `url` in a new tab; returns the tab's session for evaluate()."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Runtime.enable", session=session)
        self.call("Page.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        return session

    def evaluate(self, session: str, expression: str):
        """The JSON value of a JavaScript expression in the tab (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=session)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ChromiumError(f"{expression[:80]}: {details.get('exception', {}).get('description', details)}")
        return result.get("result", {}).get("value")

    def close(self) -> None:
        """Close the browser (politely, then by SIGKILL to its process group) and its profile."""
        if self._pid is None:
            return
        try:
            self.call("Browser.close", timeout=5)
        except (ChromiumError, OSError):
            pass
        for fd in (self._write, self._read):
            os.close(fd)
        deadline = time.monotonic() + 5
        while not os.waitpid(self._pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.killpg(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
                break
            time.sleep(0.05)
        self._pid = None
        self._profile.cleanup()
