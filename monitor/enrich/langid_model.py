"""py3langid's model, memory-mapped from a cache file: only the pages texts reach stay resident.

Loaded the stock way, the model is ~76 MB of private memory in every process
(the byte DFA's 39 MB transition table, 28 MB of float16 feature weights and
~8 MB of Python lists), the largest single item of the service's resident
memory. Unpacked once into ``<cache>/langid-<digest>.bin`` and mapped read-only,
the same arrays answer the same (identical scores), but only the pages that
real texts reach are resident: about 10 MB for the 20,000 posts of
``benchmarks/ingest.py`` in eight languages. Those pages are file-backed,
reclaimable and shared between processes (the import's workers included).

The cache directory is ``$MONITOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/hashtag-monitor``,
else ``~/.cache/hashtag-monitor``. When it cannot be written the model is
loaded into memory as before, and one INFO line says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import tempfile
from array import array
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cache_dir", "load_identifier"]

log = logging.getLogger(__name__)
_FORMAT = 1
_ALIGN = 64


def cache_dir() -> Path:
    explicit = os.environ.get("MONITOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hashtag-monitor"


def load_identifier() -> Any:
    """py3langid's identifier (``norm_probs=True``), memory-mapped when possible."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    source = MODEL_DIR / MODEL_FILE
    try:
        return _mapped(source, LanguageIdentifier)
    except (OSError, ValueError, KeyError) as exc:
        log.info("language model loaded into memory, not mapped from the cache (%s)", exc)
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _cache_file(source: Path) -> Path:
    from py3langid import __version__

    stat = source.stat()
    digest = hashlib.sha256(
        f"{_FORMAT}:{__version__}:{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    return cache_dir() / f"langid-{digest}.bin"


def _mapped(source: Path, identifier: Any) -> Any:
    path = _cache_file(source)
    if not path.exists():
        _build(source, path)
    with path.open("rb") as handle:
        # Out of the page cache first, and no read-ahead: a fault then maps the one page
        # a text reaches. Pages left cached would be mapped 16 at a time around each
        # fault (the kernel's fault-around), and the whole model would soon be resident.
        # Pages another process has mapped stay (DONTNEED skips them): shared, not lost.
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        data.madvise(mmap.MADV_RANDOM)
    head_len = int.from_bytes(data[:8], "little")
    head = json.loads(bytes(data[8:8 + head_len]))
    view = memoryview(data)

    def part(name: str) -> memoryview:
        start, length, code = head["parts"][name]
        return view[start:start + length].cast(code)

    ptc_start, ptc_len, _ = head["parts"]["ptc"]
    ptc = np.frombuffer(data, dtype=np.float16, count=ptc_len // 2, offset=ptc_start)
    ptc = ptc.reshape(head["ptc_shape"])
    pc = np.asarray(head["pc"], dtype=head["pc_dtype"])
    nextmove, row, output = part("nextmove"), part("row"), part("output")
    # the constructor reads tk_row into a list of Python ints (~4 MB); mapped instead
    made = identifier(ptc, pc, head["classes"], nextmove, output, norm_probs=True,
                      tk_row=array("I", [0]))
    made.tk_row = row
    made._rowbase = part("rowbase")
    return made


def _build(source: Path, path: Path) -> None:
    """Unpack the model into *path* (written aside, then renamed: never half a file)."""
    from py3langid.modelio import load_model

    ptc, pc, classes, nextmove, row, output = load_model(source)
    ptc = np.ascontiguousarray(ptc, dtype=np.float16)
    blobs = {
        "nextmove": (memoryview(nextmove).cast("B"), nextmove.typecode),
        "row": (memoryview(row).cast("B"), row.typecode),
        "rowbase": (memoryview(array("I", (r << 8 for r in row))).cast("B"), "I"),
        "output": (memoryview(array("i", output)).cast("B"), "i"),
        "ptc": (memoryview(ptc.tobytes()), "B"),
    }
    head: dict[str, Any] = {"classes": list(classes), "pc": np.asarray(pc).tolist(),
                            "pc_dtype": str(np.asarray(pc).dtype),
                            "ptc_shape": list(ptc.shape), "parts": {}}
    # offsets depend on the header's length: reserve room, then lay the parts out
    offset = _aligned(8 + 65536 + len(json.dumps(head)))
    for name, (blob, code) in blobs.items():
        head["parts"][name] = [offset, blob.nbytes, code]
        offset = _aligned(offset + blob.nbytes)
    encoded = json.dumps(head).encode()
    if 8 + len(encoded) > head["parts"]["nextmove"][0]:
        raise ValueError("model header larger than reserved")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".langid-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(len(encoded).to_bytes(8, "little") + encoded)
            for name, (blob, _) in blobs.items():
                out.seek(head["parts"][name][0])
                out.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN
