"""Atomic writes: everything is written under a temporary name and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path


MARKER = ".brainrobust"   # in every output folder a command writes: what wrote it ("report", ...)


def check_replaceable(final: str | os.PathLike, what: str, flag: str, force: bool = False) -> None:
    """`final` may be replaced by a new `what` only if it is absent or empty, holds the marker of an
    earlier `what` (or, for reports, the report.html and summary.json of one written before the
    marker existed), or `force` is given: no command deletes what it did not write."""
    from core.errors import ConfigError

    final = Path(final)
    if force or not final.exists():
        return
    if final.is_dir():
        marker = final / MARKER
        if marker.is_file() and marker.read_text().strip() == what:
            return
        if what == "report" and (final / "report.html").is_file() and (final / "summary.json").is_file():
            return
        if not any(final.iterdir()):
            return
        held = "a folder that this command did not write"
    else:
        held = "a file"
    raise ConfigError(f"{flag} {final}: {held}; refusing to replace it (choose another folder, or pass --force "
                      "to replace it with everything in it)")


def check_writable(final: str | os.PathLike, flag: str) -> None:
    """The folder `final` can be created (or replaced) here: its nearest existing ancestor is a
    writable folder. Checked before any work, so a long run does not end in a PermissionError."""
    from core.errors import ConfigError

    final = Path(final).resolve()
    parent = final.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {final}: {parent} is a file, not a folder")
    try:   # a real probe: root passes os.access() checks that the kernel then refuses (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=parent))
    except OSError as e:
        raise ConfigError(f"{flag} {final}: cannot write in {parent} ({e.strerror or e})") from None


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False, marker: str | None = None):
    """Yield a temporary sibling directory; on success it replaces `final` in one rename.

    On any exception the temporary directory is removed, so a killed or failed build never
    leaves a half-written `final` behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if marker:
            (tmp / MARKER).write_text(marker + "\n")
        yield tmp
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists")
            trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            if trash.is_dir():
                shutil.rmtree(trash, ignore_errors=True)
            else:
                trash.unlink()
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary sibling path to write; on success it replaces `path` in one rename, on any
    exception it is removed, so readers see the old file or the complete new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj, n: int = 16) -> str:
    """Hash of a JSON-serialisable object, independent of dict order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def join_uri(base: str, *parts: str) -> str:
    """`base/part/...` for a local path or a URI, keeping a URI's query (``s3://b/p?endpoint_override=...``)
    at the end, where pyarrow reads its options."""
    head, sep, query = str(base).partition("?") if "://" in str(base) else (str(base), "", "")
    return "/".join([head.rstrip("/"), *[p.strip("/") for p in parts]]) + (sep + query)
