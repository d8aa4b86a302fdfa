"""Download helpers for MIND and Amazon-M2 (for machines with internet access).

Downloads go to ``<file>.part`` and resume from where they stopped (HTTP
Range requests); a finished file is checked against a SHA-256 when one is
known or given, its digest is written beside it (``<file>.sha256``), and only
then is it renamed into place. Archives are unpacked into a temporary folder
that is renamed when complete.

    python -m trsr_utils download mind --size small --dest data/raw/mind
    python -m trsr_utils download amazon-m2 --base-url URL --dest data/raw/amazon-m2

Notebook 01 and data/README.md say when to use it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import requests
import urllib3

MIND_BASE_URL = "https://mind201910small.blob.core.windows.net/release"
# The test split has no click labels, so only train and dev are useful here.
MIND_FILES = {
    "small": ["MINDsmall_train.zip", "MINDsmall_dev.zip"],
    "large": ["MINDlarge_train.zip", "MINDlarge_dev.zip"],
}
# Published digests, where known. None: the digest is computed and recorded
# beside the file (<file>.sha256); fetch_mind(..., sha256={name: digest}) or
# download(..., sha256=...) enforces one from Python.
KNOWN_SHA256: dict[str, str | None] = {name: None for files in MIND_FILES.values() for name in files}
AMAZON_M2_FILES = ["products_train.csv", "sessions_train.csv"]
AMAZON_M2_HELP = (
    "Amazon-M2 (KDD Cup 2023) is distributed by AIcrowd after you accept its rules, so there is no public "
    "direct link: download products_train.csv and sessions_train.csv from the challenge's resources page and "
    "put them in the destination folder, or pass --base-url with a mirror you are allowed to use."
)


class DownloadError(RuntimeError):
    """A download that failed, with what to do about it."""


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
    quiet: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest``, resuming a previous partial download."""
    dest = Path(dest)
    if dest.exists():
        if sha256 and sha256_of(dest) != sha256:
            raise DownloadError(f"{dest} exists but its SHA-256 is not {sha256}: delete it and download again")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    host = urlparse(url).netloc or url
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.ConnectionError as exc:
        raise DownloadError(
            f"cannot reach {host} to download {url} (offline, or behind a proxy?). Download it on a machine "
            f"with internet access and place it at {dest}. ({exc.__class__.__name__})"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise DownloadError(f"{host} did not answer within {timeout:.0f} s; try again later") from exc
    with response:
        if response.status_code == 416 and have:
            # The partial file is already complete (or the server forgot it): start over cleanly.
            part.unlink()
            return download(url, dest, sha256, timeout, chunk, quiet)
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        mode = "ab" if response.status_code == 206 and have else "wb"
        if mode == "wb":
            have = 0
        total = response.headers.get("Content-Length")
        total_size = have + int(total) if total is not None else None
        if not quiet:
            verb = "resuming" if mode == "ab" else "downloading"
            print(f"{verb} {url} -> {dest}" + (f" ({total_size / 1e6:.1f} MB)" if total_size else ""),
                  file=sys.stderr)
        try:
            with open(part, mode) as fh:
                try:
                    # read1 returns what has arrived, so a dropped connection loses no received byte.
                    while block := response.raw.read1(chunk, decode_content=True):
                        fh.write(block)
                finally:
                    fh.flush()
                    os.fsync(fh.fileno())
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise DownloadError(
                f"the connection to {host} broke after {part.stat().st_size} bytes; run the same command again "
                f"to resume from {part}"
            ) from exc
    size = part.stat().st_size
    if total_size is not None and size != total_size:
        raise DownloadError(f"{url}: got {size} of {total_size} bytes; run again to resume from {part}")
    digest = sha256_of(part)
    if sha256 and digest != sha256:
        part.unlink()
        raise DownloadError(f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); the partial file was removed")
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    os.replace(part, dest)
    return dest


def extract_zip(archive: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> Path:
    """Unpack ``archive`` into ``dest_dir`` (all or nothing)."""
    dest_dir = Path(dest_dir)
    if dest_dir.exists():
        return dest_dir
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive} is not a valid zip archive ({exc}): delete it and download again") from exc
        os.replace(tmp, dest_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def fetch_mind(size: str, dest: str | os.PathLike[str], base_url: str = MIND_BASE_URL,
               sha256: dict[str, str] | None = None, quiet: bool = False) -> list[Path]:
    """Download and unpack MIND train and dev; returns the unpacked split folders."""
    if size not in MIND_FILES:
        raise ValueError(f"size must be one of {list(MIND_FILES)}, got {size!r}")
    dest = Path(dest)
    folders = []
    for name in MIND_FILES[size]:
        expected = (sha256 or {}).get(name) or KNOWN_SHA256.get(name)
        archive = download(f"{base_url.rstrip('/')}/{name}", dest / name, expected, quiet=quiet)
        folders.append(extract_zip(archive, dest / Path(name).stem))
    return folders


def fetch_amazon_m2(dest: str | os.PathLike[str], base_url: str | None, quiet: bool = False) -> list[Path]:
    """Download products_train.csv and sessions_train.csv from ``base_url``."""
    dest = Path(dest)
    if base_url is None:
        if all((dest / f).exists() for f in AMAZON_M2_FILES):
            return [dest / f for f in AMAZON_M2_FILES]
        raise DownloadError(AMAZON_M2_HELP)
    return [download(f"{base_url.rstrip('/')}/{f}", dest / f, quiet=quiet) for f in AMAZON_M2_FILES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trsr_utils download", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    p_mind = sub.add_parser("mind", help="MIND news recommendation dataset")
    p_mind.add_argument("--size", choices=list(MIND_FILES), default="small")
    p_mind.add_argument("--dest", default="data/raw/mind")
    p_mind.add_argument("--base-url", default=MIND_BASE_URL)
    p_amz = sub.add_parser("amazon-m2", help="Amazon-M2 (KDD Cup 2023) sessions and products")
    p_amz.add_argument("--dest", default="data/raw/amazon-m2")
    p_amz.add_argument("--base-url", default=None)
    args = parser.parse_args(argv)
    try:
        if args.dataset == "mind":
            paths = fetch_mind(args.size, args.dest, args.base_url)
        else:
            paths = fetch_amazon_m2(args.dest, args.base_url)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
