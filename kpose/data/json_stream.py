"""Reading a large JSON object one array element at a time.

A COCO keypoints file of train scale (118k images, 260k people with polygon
segmentations, ~450 MB) takes several GB as Python objects once `json.load`
has read it. `iter_object` walks the top-level object instead and hands the
elements of chosen arrays (``images``, ``annotations``) to the caller one by
one, each with its raw JSON text, so memory stays near one read chunk plus one
element, whatever the file's size. Other top-level values (``info``,
``categories``) are decoded whole: they are small.

Only the top level is walked by hand; every value is decoded by the standard
library's C decoder (`json.JSONDecoder.raw_decode`), so what is accepted is
exactly what `json.load` accepts.
"""
from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterator

from kpose.data.images import DataError

CHUNK = 1 << 20  # characters read at a time
_WS = " \t\n\r"
_CUT_MARGIN = 32  # longer than any literal, number or escape that a chunk boundary can split
_decoder = json.JSONDecoder()


class _Reader:
    """A text buffer over a file that grows on demand and drops what was consumed."""

    def __init__(self, path: str, fix: str):
        self.path, self.fix = path, fix
        self.file = open(path, "rb")
        self.text = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.done, self.base, self.first = "", 0, False, 0, True

    def close(self) -> None:
        self.file.close()

    def more(self, at_least: int = 1) -> bool:
        """Append at least `at_least` more characters when the file has them; False at its end."""
        if self.pos > CHUNK:  # forget what was consumed: the buffer stays about one value long
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        grown = 0
        while grown < at_least and not self.done:
            raw = self.file.read(max(CHUNK, at_least - grown))
            try:
                chunk = self.text.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise DataError(f"{self.path}: not UTF-8 text ({e}). Fix: {self.fix}") from None
            if not raw:
                self.done = True
            if self.first and chunk:
                chunk, self.first = chunk.removeprefix("\ufeff"), False  # a byte-order mark is no JSON
            self.buf += chunk
            grown += len(chunk)
        return grown > 0

    def error(self, what: str) -> DataError:
        return DataError(f"{self.path}: invalid JSON at character {self.base + self.pos}: {what}. Fix: {self.fix}")

    def peek(self) -> str:
        """The next non-space character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, chars: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            raise self.error(f"expected {' or '.join(repr(x) for x in chars)}, found {c!r}")
        self.pos += 1
        return c

    def value(self) -> tuple[object, str]:
        """Decode the next JSON value: (the value, its raw text)."""
        self.peek()
        while True:
            try:
                obj, end = _decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # A value cut by the buffer's end fails near that end (or as an unterminated
                # string): read on, doubling so that a big value costs linear time, and decode
                # it again. A failure well before the end is the file's error.
                cut = e.pos >= len(self.buf) - _CUT_MARGIN or e.msg.startswith("Unterminated string")
                if cut and self.more(len(self.buf) - self.pos):
                    continue
                self.pos = e.pos
                raise self.error(e.msg) from None
            # A number (or true/false/null) that ends the buffer may go on in the next chunk.
            if end == len(self.buf) and self.more():
                continue
            raw = self.buf[self.pos:end]
            self.pos = end
            return obj, raw


def iter_object(path: str | os.PathLike, stream: Callable[[str], bool], fix: str
                ) -> Iterator[tuple[str, object]]:
    """Walk a JSON file whose top level is an object: yield (key, value) per member.

    Members whose key `stream(key)` accepts and whose value is an array come as an
    iterator of (element, raw JSON text of the element), to be consumed before the
    walk goes on (what is left is skipped); others come decoded whole. Errors are
    DataErrors naming the file, the position and `fix`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found. Fix: {fix}")
    r = _Reader(path, fix)
    try:
        c = r.peek()
        if c != "{":
            raise r.error(f"the top level is not a JSON object (starts with {c!r})")
        r.pos += 1
        if r.peek() == "}":
            return
        while True:
            key, _ = r.value()
            if not isinstance(key, str):
                raise r.error("an object key is not a string")
            r.expect(":")
            if stream(key) and r.peek() == "[":
                r.pos += 1
                elements = _elements(r)
                yield key, elements
                for _ in elements:  # the caller stopped early: skip the rest
                    pass
            else:
                yield key, r.value()[0]
            if r.expect(",}") == "}":
                return
    finally:
        r.close()


def _elements(r: _Reader) -> Iterator[tuple[object, str]]:
    if r.peek() == "]":
        r.pos += 1
        return
    while True:
        yield r.value()
        if r.expect(",]") == "]":
            return
