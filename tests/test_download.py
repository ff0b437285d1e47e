"""Tests for gaze/download.py against a local HTTP server on 127.0.0.1 (no internet).

The server serves the real CUB-GHA run files (``real_runs_dir``) under ``/good/``, and
broken copies under ``/tampered/`` (one byte changed), ``/truncated/`` (first half, with
an honest Content-Length), ``/short/`` (full Content-Length announced, half sent) and
``/slow/`` (answers after a delay). Everything else is a 404. Requests are counted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from gaze import __main__ as gaze_cli
from gaze.download import CUB_GHA_SHA256, DownloadError, download_cub_gha, download_file, main

SLOW_SECONDS = 1.0


class FileServer:
    """A threaded HTTP server for in-memory files, keyed by URL path, counting requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.requests[self.path] += 1
                try:
                    server.respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve the file at the request path, breaking it as the folder name says."""
        data = self.files.get(handler.path)
        if data is None:
            handler.send_error(404, "Not Found")
            return
        if handler.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
        sent = data[: len(data) // 2] if handler.path.startswith("/short/") else data
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(sent)
        handler.close_connection = True

    def total_requests(self, folder: str) -> int:
        return sum(n for path, n in self.requests.items() if path.startswith(f"/{folder}/"))


def tamper(data: bytes) -> bytes:
    """The same bytes with one digit changed in the middle."""
    middle = len(data) // 2
    while not data[middle : middle + 1].isdigit():
        middle += 1
    digit = b"1" if data[middle : middle + 1] != b"1" else b"2"
    return data[:middle] + digit + data[middle + 1 :]


def served_files(originals: dict[str, bytes]) -> dict[str, bytes]:
    """URL path -> bytes for the good copy and every broken copy of each file."""
    files = {}
    for name, data in originals.items():
        files[f"/good/{name}"] = data
        files[f"/tampered/{name}"] = tamper(data)
        files[f"/truncated/{name}"] = data[: len(data) // 2]
        files[f"/short/{name}"] = data
        files[f"/slow/{name}"] = data
    return files


def start(files: dict[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(files)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture(scope="module")
def real_bytes(real_runs_dir: Path) -> dict[str, bytes]:
    return {name: (real_runs_dir / name).read_bytes() for name in CUB_GHA_SHA256}


@pytest.fixture
def server(real_bytes: dict[str, bytes]) -> Iterator[FileServer]:
    yield from start(served_files(real_bytes))


@pytest.fixture
def synthetic_server() -> Iterator[FileServer]:
    yield from start(served_files({"a.txt": b"1,2,3,4,5,6\r\n" * 1000}))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of gaze.atomic left in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_real_files_are_fetched_byte_identical_and_not_fetched_twice(server, real_bytes, tmp_path):
    messages: list[str] = []
    paths = download_cub_gha(tmp_path / "runs", base_url=server.url + "/good/", log=messages.append)
    assert [p.name for p in paths] == sorted(CUB_GHA_SHA256)
    for path in paths:
        assert path.read_bytes() == real_bytes[path.name]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(CUB_GHA_SHA256)
    assert server.total_requests("good") == 5
    assert "5 fetched, 0 already present" in messages[-1]

    messages.clear()
    assert download_cub_gha(tmp_path / "runs", base_url=server.url + "/good", log=messages.append) == paths
    assert server.total_requests("good") == 5
    assert all("not fetched again" in m for m in messages[:-1])
    assert "0 fetched, 5 already present" in messages[-1]


def test_force_fetches_again(server, tmp_path):
    download_cub_gha(tmp_path, base_url=server.url + "/good", log=None)
    download_cub_gha(tmp_path, base_url=server.url + "/good", force=True, log=None)
    assert server.total_requests("good") == 10


@pytest.mark.parametrize("folder", ["tampered", "truncated"])
def test_corrupt_download_is_rejected_and_nothing_left(server, real_bytes, tmp_path, folder):
    name = "Fixation_run3.txt"
    url = f"{server.url}/{folder}/{name}"
    with pytest.raises(DownloadError) as error:
        download_file(url, tmp_path / name, CUB_GHA_SHA256[name], log=None)
    message = str(error.value)
    served = server.files[f"/{folder}/{name}"]
    for part in (str(tmp_path / name), url, CUB_GHA_SHA256[name], sha256(served)):
        assert part in message
    assert list(tmp_path.iterdir()) == []


def test_connection_closed_early_is_rejected(server, tmp_path):
    name = "Fixation_run2.txt"
    url = f"{server.url}/short/{name}"
    with pytest.raises(DownloadError, match="truncated") as error:
        download_file(url, tmp_path / name, CUB_GHA_SHA256[name], log=None)
    assert url in str(error.value) and str(tmp_path / name) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_http_404_names_file_and_url(server, tmp_path):
    url = f"{server.url}/missing/Fixation_run1.txt"
    with pytest.raises(DownloadError, match="HTTP 404") as error:
        download_file(url, tmp_path / "Fixation_run1.txt", CUB_GHA_SHA256["Fixation_run1.txt"], log=None)
    assert url in str(error.value) and "Fixation_run1.txt" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_present_file_with_wrong_hash_is_fetched_again(server, real_bytes, tmp_path):
    name = "Fixation_run4.txt"
    (tmp_path / name).write_bytes(b"not the run file\r\n")
    messages: list[str] = []
    assert download_file(f"{server.url}/good/{name}", tmp_path / name, CUB_GHA_SHA256[name], log=messages.append)
    assert (tmp_path / name).read_bytes() == real_bytes[name]
    assert "fetching again" in messages[0] and sha256(b"not the run file\r\n") in messages[0]
    assert leftovers(tmp_path) == []


def test_failed_refetch_leaves_existing_file_untouched(server, tmp_path):
    name = "Fixation_run5.txt"
    (tmp_path / name).write_bytes(b"old\r\n")
    with pytest.raises(DownloadError):
        download_file(f"{server.url}/tampered/{name}", tmp_path / name, CUB_GHA_SHA256[name], log=None)
    assert (tmp_path / name).read_bytes() == b"old\r\n"
    assert leftovers(tmp_path) == []


def test_stalled_server_times_out(synthetic_server, tmp_path):
    data = synthetic_server.files["/good/a.txt"]
    with pytest.raises(DownloadError, match="a.txt"):
        download_file(f"{synthetic_server.url}/slow/a.txt", tmp_path / "a.txt", sha256(data), timeout=0.2, log=None)
    assert list(tmp_path.iterdir()) == []


def test_generic_download_without_real_data(synthetic_server, tmp_path):
    data = synthetic_server.files["/good/a.txt"]
    dest = tmp_path / "sub" / "a.txt"
    assert download_file(f"{synthetic_server.url}/good/a.txt", dest, sha256(data).upper(), log=None)
    assert dest.read_bytes() == data
    assert not download_file(f"{synthetic_server.url}/good/a.txt", dest, sha256(data), log=None)
    assert not download_file(f"{synthetic_server.url}/good/a.txt", dest, None, log=None)
    assert synthetic_server.total_requests("good") == 1


def test_command_line_success_and_failure(server, real_bytes, tmp_path, capsys):
    dest = tmp_path / "runs"
    argv = ["download", "cub-gha", "--dest", str(dest), "--base_url", server.url + "/good"]
    assert gaze_cli.main(argv) == 0
    assert "5 fetched" in capsys.readouterr().out
    assert (dest / "Fixation_run1.txt").read_bytes() == real_bytes["Fixation_run1.txt"]

    assert main(["cub-gha", "--dest", str(tmp_path / "bad"), "--base_url", server.url + "/tampered"]) == 1
    error = capsys.readouterr().err
    assert "Fixation_run1.txt" in error and CUB_GHA_SHA256["Fixation_run1.txt"] in error
    assert list((tmp_path / "bad").iterdir()) == []


def test_a_torch_hub_digest_prefix_is_checked(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert download_file(source.as_uri(), tmp_path / "ok.bin", digest[:8], log=None)
    with pytest.raises(DownloadError, match="corrupt"):
        download_file(source.as_uri(), tmp_path / "bad.bin", "0" * 8, log=None)
    assert not (tmp_path / "bad.bin").exists()
    with pytest.raises(ValueError, match="8 hex"):
        download_file(source.as_uri(), tmp_path / "short.bin", digest[:4], log=None)
