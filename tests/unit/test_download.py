"""Download helpers against a small archive served on loopback (no internet)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from trsr_utils.data import download as dl


class RangeHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_after: dict[str, int] = {}  # path -> bytes sent before the first response is cut off
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        data = self.files.get(self.path)
        self.log.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("news.tsv", "N1\tnews\tnewsus\tA title\t\turl\t[]\t[]\n" * 2000)
        zf.writestr("behaviors.tsv", "1\tU1\t11/11/2019 9:00:00 AM\tN1\tN1-1\n")
    payload = archive.read_bytes()
    RangeHandler.files = {"/release/MINDsmall_train.zip": payload, "/release/MINDsmall_dev.zip": payload,
                          "/amz/products_train.csv": b"id,locale\n", "/amz/sessions_train.csv": b"prev_items\n"}
    RangeHandler.cut_after, RangeHandler.log = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", payload
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_after_a_broken_connection(server, tmp_path):
    base, payload = server
    RangeHandler.cut_after["/release/MINDsmall_train.zip"] = 1000
    dest = tmp_path / "out" / "MINDsmall_train.zip"
    with pytest.raises(dl.DownloadError, match="run the same command again to resume|run again to resume"):
        dl.download(f"{base}/release/MINDsmall_train.zip", dest, quiet=True)
    part = dest.with_name(dest.name + ".part")
    assert part.exists() and 0 < part.stat().st_size < len(payload) and not dest.exists()
    got = dl.download(f"{base}/release/MINDsmall_train.zip", dest, quiet=True)
    assert got.read_bytes() == payload and not part.exists()
    assert RangeHandler.log[-1][1] == f"bytes={part_size_before(RangeHandler.log)}-"
    digest = hashlib.sha256(payload).hexdigest()
    assert dest.with_name(dest.name + ".sha256").read_text().split()[0] == digest


def part_size_before(log):
    return int(log[-1][1].split("=")[1].rstrip("-"))


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    base, payload = server
    dest = tmp_path / "x.zip"
    with pytest.raises(dl.DownloadError, match="SHA-256 mismatch"):
        dl.download(f"{base}/release/MINDsmall_dev.zip", dest, sha256="0" * 64, quiet=True)
    assert not dest.exists() and not dest.with_name("x.zip.part").exists()
    good = hashlib.sha256(payload).hexdigest()
    assert dl.download(f"{base}/release/MINDsmall_dev.zip", dest, sha256=good, quiet=True).exists()


def test_fetch_mind_unpacks_train_and_dev(server, tmp_path):
    base, _ = server
    folders = dl.fetch_mind("small", tmp_path / "mind", base_url=f"{base}/release", quiet=True)
    assert [f.name for f in folders] == ["MINDsmall_train", "MINDsmall_dev"]
    assert (folders[0] / "news.tsv").exists() and (folders[1] / "behaviors.tsv").exists()
    # a second call finds everything in place and downloads nothing
    n = len(RangeHandler.log)
    dl.fetch_mind("small", tmp_path / "mind", base_url=f"{base}/release", quiet=True)
    assert len(RangeHandler.log) == n


def test_http_errors_and_offline_message(server, tmp_path):
    base, _ = server
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{base}/missing.zip", tmp_path / "m.zip", quiet=True)
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(dl.DownloadError, match=r"cannot reach 127.0.0.1:\d+ .*offline.*place it at"):
        dl.download(f"http://127.0.0.1:{port}/a.zip", tmp_path / "a.zip", quiet=True, timeout=5)


def test_bad_zip_and_amazon_instructions(server, tmp_path):
    base, _ = server
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(dl.DownloadError, match="not a valid zip archive"):
        dl.extract_zip(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(dl.DownloadError, match="AIcrowd"):
        dl.fetch_amazon_m2(tmp_path / "amz", base_url=None)
    files = dl.fetch_amazon_m2(tmp_path / "amz", base_url=f"{base}/amz", quiet=True)
    assert [f.name for f in files] == ["products_train.csv", "sessions_train.csv"]
    assert dl.main(["amazon-m2", "--dest", str(tmp_path / "amz")]) == 0  # already there: nothing to fetch
