"""The lines of an import file, read so that one bad line costs one rejection.

* A line longer than the line-size limit (:data:`MAX_LINE_CHARS`, 16 Mi
  characters unless ``--max-line-mb``) is skipped in 1 MiB pieces, never held
  whole, and rejected as ``FILE:LINE``.
* Bytes that are not UTF-8 are decoded as lone surrogates (``surrogateescape``)
  so that the line they are on, and only that line, is rejected with the byte
  and its column.
* A ``.gz`` that is not gzip is refused before anything is read; one that ends
  early (a truncated download) or is corrupt is reported at the line where
  its data stops, after the lines before it.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path
from typing import IO

from monitor.errors import InputError

__all__ = ["MAX_LINE_CHARS", "GzipBroken", "Lines", "bad_bytes", "gzip_failure", "open_text"]

# 16 Mi characters: a whole Twitter API v2 answer (100 tweets with their includes)
# is well under 1 MiB, and a line this long is a broken export, not a post
MAX_LINE_CHARS = 16 << 20
_PIECE = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_SURROGATE = re.compile("[\udc80-\udcff]")
_ENDS = ("\n", "\r")

# what reading a broken .gz raises: EOFError when the data stops before the gzip
# end marker (a truncated file), zlib.error or BadGzipFile (an OSError) when corrupt
GzipBroken = (EOFError, zlib.error, gzip.BadGzipFile)


def gzip_failure(exc: BaseException) -> str:
    """The rejection reason for a broken gzip stream."""
    if isinstance(exc, EOFError):
        return ("the gzip data ends here: the file is truncated (an incomplete download or "
                "copy?); the lines before it were read")
    return f"the gzip data is corrupt from here ({exc}); the lines before it were read"


def open_text(path: Path) -> IO[str]:
    """*path* as text (UTF-8, undecodable bytes kept as surrogates), gunzipped if ``.gz``."""
    if path.suffix.lower() == ".gz":
        with path.open("rb") as raw:
            magic = raw.read(2)
        if magic and magic != _GZIP_MAGIC:
            raise InputError(str(path), "not gzip data although the name ends in .gz "
                                        "(decompress it first, or rename it without .gz)")
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8",
                                errors="surrogateescape", newline="")
    return path.open("r", encoding="utf-8", errors="surrogateescape", newline="")


def bad_bytes(text: str) -> str | None:
    """Why *text* (decoded with ``surrogateescape``) is not UTF-8, or None when it is."""
    if text.isascii():  # no surrogate; and ~10x cheaper than the search on every line
        return None
    found = _SURROGATE.search(text)
    if found is None:
        return None
    byte = ord(found.group()) - 0xDC00
    return (f"not UTF-8 text (byte 0x{byte:02X} at column {found.start() + 1}; if the file is "
            "Latin-1 or Windows-1252, convert it: iconv -f cp1252 -t utf-8)")


class Lines:
    """The physical lines of *handle*, none longer than *limit* characters.

    An over-long line is skipped without being held and comes out as an empty
    line, so a CSV reader keeps counting lines; its number is put in
    :attr:`overlong` for the caller to reject. :attr:`number` is the number of
    the last line handed out.
    """

    def __init__(self, handle: IO[str], limit: int = MAX_LINE_CHARS) -> None:
        self._handle = handle
        self.limit = limit
        self.number = 0
        self.overlong: list[int] = []

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        line = self._handle.readline(self.limit + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if len(line) > self.limit and not line.endswith(_ENDS):
            while True:
                rest = self._handle.readline(_PIECE)
                if not rest or rest.endswith(_ENDS):
                    break
            self.overlong.append(self.number)
            return "\n"
        return line

    def too_long(self) -> str:
        return (f"line longer than the line-size limit of {self.limit:,} characters "
                "(raise it with --max-line-mb if the line is a real record)")
