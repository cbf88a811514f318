"""Fetching a file from a list of mirrors: resume, checksum, atomic rename (urllib only).

For each mirror in turn the file is streamed into ``<name>.part`` next to its destination. A
``.part`` left by an earlier, interrupted attempt is resumed with an HTTP ``Range`` request (a
server that ignores Range and answers 200 gets the file rewritten from the start). The complete
``.part`` is checked against the known size and checksums and only then renamed into place with
``os.replace``, so the destination name never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's size or hash differs from the published one."""


class DownloadError(OSError):
    """No mirror delivered a file that passed its checksum."""


@dataclass(frozen=True)
class Checksum:
    """What a file must look like: its size in bytes and hex digests (any may be unknown)."""

    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


def file_digests(path: Path) -> tuple[int, str, str]:
    """Size, sha256 and md5 of ``path``, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def verify_file(path: Path, expected: Checksum, name: str | None = None) -> None:
    """Raise ChecksumError when ``path`` differs from ``expected`` in size, sha256 or md5."""
    name = name or path.name
    if expected.size is not None and path.stat().st_size != expected.size:
        raise ChecksumError(
            f"{path}: {path.stat().st_size} bytes; expected {expected.size} for {name}. The file is "
            "incomplete or a different file; delete it and fetch it again."
        )
    if expected.sha256 is None and expected.md5 is None:
        return
    _, sha, md5 = file_digests(path)
    for algo, want, got in (("sha256", expected.sha256, sha), ("md5", expected.md5, md5)):
        if want is not None and got != want.lower():
            raise ChecksumError(
                f"{path}: checksum mismatch, {algo} is {got}; expected {want} for {name}. The file "
                "is corrupt or not the published one; delete it and fetch it again."
            )


def check_mirrors(mirrors: Sequence[str]) -> tuple[str, ...]:
    """``mirrors`` as a non-empty tuple of base-URL strings."""
    if isinstance(mirrors, str | bytes) or not all(isinstance(m, str) for m in mirrors):
        raise TypeError(
            f"mirrors={mirrors!r}; expected a list of base URLs such as "
            "['https://example.org/mnist/'] (a list, even for one mirror)"
        )
    if not mirrors:
        raise ValueError("mirrors is empty; expected at least one base URL to download from")
    return tuple(mirrors)


def _stream(url: str, part: Path, expected: Checksum, timeout: float) -> None:
    """Bring ``part`` up to the end of the file at ``url``, resuming what is already there."""
    offset = part.stat().st_size if part.exists() else 0
    if expected.size is not None and offset >= expected.size:
        if offset == expected.size:
            return  # complete from an earlier attempt; verification decides whether it is good
        part.unlink()
        offset = 0
    headers = {"User-Agent": "nablanet"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return  # nothing left past offset: the part is complete (or wrong, which verify tells)
        raise
    with response:
        append = False
        if offset and response.status == 206:
            # Only trust the partial answer if it starts exactly where our part file ends.
            append = response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
            if not append:
                raise DownloadError(
                    f"{url} answered Range bytes={offset}- with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; cannot resume"
                )
        announced = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if append else "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                received += len(chunk)
        # urllib's read(n) ends quietly when the server closes early; the part is kept to resume.
        if announced is not None and announced.isdigit() and received < int(announced):
            raise DownloadError(f"connection closed after {received} of {announced} bytes")


def fetch(
    filename: str,
    root: Path,
    *,
    mirrors: Sequence[str],
    expected: Checksum,
    timeout: float = 30.0,
) -> Path:
    """Download ``filename`` into ``root`` from the first mirror that delivers a verified copy.

    URLs are ``mirror.rstrip('/') + '/' + filename``. An unreachable mirror, an HTTP error or a
    checksum mismatch moves on to the next mirror; a mismatching ``.part`` is deleted first (and a
    resumed one is retried once from byte 0 on the same mirror, since the stale prefix may be
    what is wrong). Raises DownloadError listing every mirror's failure when none succeeds.
    """
    if expected.sha256 is None and expected.md5 is None:
        raise ValueError(f"fetch({filename!r}) got no sha256 or md5; refusing an unverified download")
    mirrors = check_mirrors(mirrors)
    root.mkdir(parents=True, exist_ok=True)
    dest, part = root / filename, root / f"{filename}.part"
    failures: list[str] = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{filename}"
        for attempt in range(2):
            resumed = part.exists() and part.stat().st_size > 0
            try:
                _stream(url, part, expected, timeout)
            except (OSError, http.client.HTTPException) as exc:
                # The part file is kept: the next mirror can resume it (the checksum guards that).
                failures.append(f"{url}: {exc}")
                break
            if expected.size is not None and part.stat().st_size < expected.size:
                failures.append(
                    f"{url}: connection ended at {part.stat().st_size} of {expected.size} bytes"
                )
                break
            try:
                verify_file(part, expected, filename)
            except ChecksumError as exc:
                part.unlink(missing_ok=True)
                if resumed and attempt == 0:
                    continue
                failures.append(f"{url}: {exc} (deleted)")
                break
            os.replace(part, dest)
            return dest
    tried = "\n".join(f"  - {f}" for f in failures)
    raise DownloadError(
        f"could not download {filename} into {root}; tried {len(mirrors)} mirror(s):\n{tried}\n"
        f"Fix: check the network, pass mirrors=[...] with a mirror that has {filename}, or "
        f"place the file in {root} yourself."
    )
