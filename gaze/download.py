"""Download files with SHA-256 checks; fetch the real CUB-GHA run files.

``python -m gaze.download cub-gha [--dest data_5runs] [--base_url URL] [--force]``
(also ``python -m gaze download cub-gha ...``) fetches the five
``data_5runs/Fixation_run{1..5}.txt`` files of CUB-GHA (Rong et al., BMVC 2021,
github.com/yaorong0921/CUB-GHA) and verifies each against its published SHA-256.

Each file is streamed into a temporary file beside the target, hashed while it arrives,
and renamed onto the target only when the hash matches (:func:`gaze.atomic.atomic_path`).
A corrupt, truncated or failed download raises :class:`DownloadError` naming the file,
the URL and the hashes, and leaves nothing behind (an older file at the target is left
untouched). A finished file whose hash matches is not fetched again; one whose hash does
not match is fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable

from tqdm import tqdm

from gaze.atomic import atomic_path

#: Where the run files are served (repository yaorong0921/CUB-GHA, branch main, commit bec877a4).
CUB_GHA_BASE_URL = "https://raw.githubusercontent.com/yaorong0921/CUB-GHA/main/data_5runs"
#: SHA-256 of the exact bytes served at CUB_GHA_BASE_URL/<name>
#: (source: ../shared/cub_gha/README.md, measured on commit bec877a4).
CUB_GHA_SHA256 = {
    "Fixation_run1.txt": "9386b8cf85586855b02d86cae6005270f3b3f93b7d2e4cc2897e43e3708c1acf",
    "Fixation_run2.txt": "dadfcc9e254bdc665aab5621b4082e5fb4742c33b60db89e09273ce677d46ac3",
    "Fixation_run3.txt": "ba9e958544b830767027f962a57c0d4dbf5104b49daf9e683bd482e1c9501a55",
    "Fixation_run4.txt": "144ddc6b7d8fea00024fdb0ca9ffc71924ff1a3b810b9f47ffefcb806d13d558",
    "Fixation_run5.txt": "04a6c8e8d9e50f2291e8dc2772e0ee54cc4df68cb3b6416c5a3c4ac0a6f19b64",
}
#: Seconds a connection or a single read may stall before the download fails.
DEFAULT_TIMEOUT = 60.0
CHUNK_SIZE = 1 << 20

Log = Callable[[str], None]


class DownloadError(RuntimeError):
    """A download that failed or did not match its SHA-256; the message names file and URL."""


def sha256_of(path: str | os.PathLike, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quiet(message: str) -> None:
    """A log function that says nothing."""


def _matches(actual: str, expected: str) -> bool:
    """A full digest must be equal; a prefix (>= 8 hex digits) must start the digest."""
    if len(expected) < 8:
        raise ValueError(f"SHA-256 {expected!r}: give the full digest or at least its first 8 hex digits")
    return actual.startswith(expected) if len(expected) < 64 else actual == expected


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None,
    *,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
    log: Log | None = print,
) -> bool:
    """Fetch ``url`` to ``dest`` atomically, verifying its SHA-256.

    Args:
        url: http(s) or file URL.
        dest: target file; its folder is created.
        sha256: expected hex digest, or its first >= 8 hex digits (the torch.hub file-name
            convention, e.g. ``resnet50-19c8e357.pth``); None skips verification (an
            existing file is then always kept unless ``force``).
        force: fetch even when ``dest`` already has the expected hash.
        timeout: seconds a connection or read may stall.
        progress: show a tqdm bar; None shows one when stderr is a terminal.
        log: where to say what happened (``print`` by default; None is silent).

    Returns:
        True when the file was fetched, False when an existing file already matched.

    Raises:
        DownloadError: HTTP/network error, truncated body or hash mismatch; nothing is
            written to ``dest`` and no temporary file remains.
    """
    dest, log = Path(dest), log or _quiet
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and not force:
        if expected is None:
            log(f"{dest}: present (no SHA-256 to check), not fetched again")
            return False
        actual = sha256_of(dest)
        if _matches(actual, expected):
            log(f"{dest}: present, SHA-256 matches, not fetched again")
            return False
        log(f"{dest}: present but SHA-256 is {actual}, expected {expected}; fetching again")
    with atomic_path(dest) as temporary:
        actual = _fetch(url, temporary, dest, expected, timeout, progress)
        if expected is not None and not _matches(actual, expected):
            raise DownloadError(
                f"{dest}: download from {url} is corrupt: SHA-256 {actual}, expected "
                f"{expected} ({temporary.stat().st_size:,} bytes received); nothing was written"
            )
    log(f"{dest}: fetched from {url} ({dest.stat().st_size:,} bytes, SHA-256 verified)")
    return True


def _fetch(
    url: str, temporary: Path, dest: Path, expected: str | None, timeout: float, progress: bool | None
) -> str:
    """Stream ``url`` into ``temporary``; return the hex SHA-256 of the bytes received."""
    where = f"{dest}: download from {url} failed"
    hashes = f"(expected SHA-256 {expected})" if expected else ""
    request = urllib.request.Request(url, headers={"User-Agent": "gaze-download"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with open(temporary, "wb") as out:
                digest, received = _copy(response, out, total, dest.name, progress)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{where}: HTTP {error.code} {error.reason} {hashes}".rstrip()) from None
    except http.client.IncompleteRead as error:
        raise DownloadError(
            f"{where}: truncated after {len(error.partial):,} bytes, "
            f"{error.expected:,} more expected {hashes}".rstrip()
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"{where}: {type(error).__name__}: {reason} {hashes}".rstrip()) from None
    if total is not None and received != total:
        raise DownloadError(
            f"{where}: truncated, {received:,} of {total:,} bytes received "
            f"(SHA-256 of the part {digest}) {hashes}".rstrip()
        )
    return digest


def _copy(
    source: BinaryIO, out: BinaryIO, total: int | None, name: str, progress: bool | None
) -> tuple[str, int]:
    """Copy ``source`` to ``out`` in chunks with an optional bar; return (sha256, bytes)."""
    digest, received = hashlib.sha256(), 0
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not show, leave=False) as bar:
        for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), received


def download_cub_gha(
    dest: str | os.PathLike = "data_5runs",
    base_url: str = CUB_GHA_BASE_URL,
    force: bool = False,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool | None = None,
    log: Log | None = print,
) -> list[Path]:
    """Fetch and verify the five CUB-GHA run files into ``dest``; print a summary.

    Args:
        dest: folder for ``Fixation_run{1..5}.txt`` (created).
        base_url: folder URL serving the files (a mirror, or a local server in tests).
        force: fetch again even files whose hash already matches.
        timeout, progress, log: as in :func:`download_file`.

    Returns:
        The five file paths, run 1 first.
    """
    dest, log = Path(dest), log or _quiet
    paths, fetched = [], 0
    for name, sha256 in CUB_GHA_SHA256.items():
        url = f"{base_url.rstrip('/')}/{name}"
        path = dest / name
        fetched += download_file(url, path, sha256, force=force, timeout=timeout, progress=progress, log=log)
        paths.append(path)
    size = sum(p.stat().st_size for p in paths)
    log(
        f"CUB-GHA: {len(paths)} run files in {dest} ({size / 1e6:.1f} MB, SHA-256 verified): "
        f"{fetched} fetched, {len(paths) - fetched} already present"
    )
    return paths


def build_parser(prog: str = "python -m gaze download") -> argparse.ArgumentParser:
    """Command-line options of ``python -m gaze download``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["cub-gha"], help="what to download")
    parser.add_argument("--dest", default="data_5runs", help="target folder (default: %(default)s)")
    parser.add_argument("--base_url", default=CUB_GHA_BASE_URL, help="folder URL (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="fetch again even files that verify")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds a read may stall")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the download command; return 0 on success, 1 on a failed download."""
    args = build_parser().parse_args(argv)
    try:
        download_cub_gha(args.dest, args.base_url, args.force, timeout=args.timeout)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
