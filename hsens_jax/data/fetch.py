"""Download MNIST, Fashion-MNIST and CIFAR-10 from their canonical sources (``hsens data fetch``).

Files land in the layout the loaders read (:mod:`hsens_jax.data.layout`)::

    DATA_DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    DATA_DIR/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    DATA_DIR/cifar-10-python.tar.gz          (read in place, no extraction needed)

Every file is checked against the MD5 sum its publishers give (sources below, in
:data:`SOURCES`). A file already present with the right sum is skipped. A download goes to
``NAME.part`` beside its destination and is renamed into place only once its sum matches, so
the destination never holds a partial or corrupt file; after a network failure the ``.part``
file is kept and the next run resumes it with an HTTP range request (a server that ignores the
range sends the whole file again); a checksum mismatch removes it.

Checksum sources: MNIST and Fashion-MNIST, the ``resources`` tables of torchvision's
``torchvision/datasets/mnist.py`` (classes ``MNIST`` and ``FashionMNIST``), the latter also
published in the Fashion-MNIST README (https://github.com/zalandoresearch/fashion-mnist);
CIFAR-10, ``tgz_md5`` of torchvision's ``torchvision/datasets/cifar.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from hsens_jax.data.layout import FETCHABLE, resolve_data_dir

MIRROR_ENV = "HSENS_DATA_MIRROR"
"""Environment variable naming a mirror to download from instead of the canonical sources."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one data set's files come from.

    Attributes:
      name: the name ``hsens data fetch`` takes.
      subdir: the folder under the data directory the files go to ("" for the directory itself).
      base_url: the canonical location; file ``f`` is downloaded from ``base_url + f``.
      files: (file name, MD5 hex digest) pairs.
    """

    name: str
    subdir: str
    base_url: str
    files: tuple[tuple[str, str], ...]


SOURCES: dict[str, Source] = {
    # The S3 mirror of http://yann.lecun.com/exdb/mnist/ that torchvision downloads from.
    "mnist": Source("mnist", FETCHABLE["mnist"], "https://ossci-datasets.s3.amazonaws.com/mnist/", (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    )),
    # Zalando's S3 bucket, the download links of the Fashion-MNIST README (an S3 website
    # endpoint: plain http only; the MD5 sums guard the content).
    "fashion-mnist": Source(
        "fashion-mnist", FETCHABLE["fashion-mnist"], "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        )),
    # Alex Krizhevsky's page, https://www.cs.toronto.edu/~kriz/cifar.html
    "cifar10": Source("cifar10", FETCHABLE["cifar10"], "https://www.cs.toronto.edu/~kriz/", (
        ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    )),
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}


class FetchError(OSError):
    """A download failed (network, HTTP status, checksum): the message says which file and why."""


def fetch_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    progress: bool = True,
    stream: IO[str] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Download data set ``name`` into ``data_dir``, verifying every file's MD5 sum.

    Args:
      name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"`` (also ``"fashion_mnist"``,
        ``"cifar-10"``).
      data_dir: the data directory (default ``$HSENS_DATA``, else ``~/.cache/hsens_jax``); created
        if missing.
      mirror: a base URL to download from instead of the canonical source: file ``f`` of data
        set ``name`` is fetched from ``MIRROR/name/f``. Default: ``$HSENS_DATA_MIRROR`` if set.
        The checksums are those of the canonical files either way.
      progress: show a progress bar per file (on ``stream``).
      stream: where progress and status lines go (default ``sys.stderr``).
      timeout: seconds a connection may stay silent before the download fails.
    Returns:
      the paths of the data set's files, all present with the right checksum.
    Raises:
      ValueError for an unknown name; FetchError (an OSError) naming the URL and the file for a
      network failure, an HTTP error status or a checksum mismatch.
    """
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in SOURCES:
        raise ValueError(f"unknown data set {name!r} to fetch; choose from {list(SOURCES)}")
    source = SOURCES[key]
    stream = sys.stderr if stream is None else stream
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    base = source.base_url if mirror is None else f"{mirror.rstrip('/')}/{source.name}/"
    folder = resolve_data_dir(data_dir) / source.subdir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"cannot create the data directory {folder}: {e}") from None
    paths = []
    for file_name, md5 in source.files:
        dest = folder / file_name
        if dest.is_file():
            if _md5_of(dest) == md5:
                stream.write(f"{source.name}: {dest} already present (checksum ok)\n")
                paths.append(dest)
                continue
            stream.write(f"{source.name}: {dest} has the wrong checksum; downloading it again\n")
        _download(base + file_name, dest, md5, progress=progress, stream=stream, timeout=timeout)
        paths.append(dest)
    stream.flush()
    return paths


def _md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str, *, progress: bool, stream: IO[str], timeout: float) -> None:
    """``url`` -> ``dest`` through ``dest.part`` (resumed when present), checked against ``md5``."""
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):
        offset = part.stat().st_size if part.is_file() else 0
        digest = _receive(url, part, offset, progress=progress, stream=stream, timeout=timeout)
        if digest == md5:
            os.replace(part, dest)
            return
        part.unlink(missing_ok=True)
        if offset and attempt == 0:
            stream.write(f"{dest.name}: the resumed download has the wrong checksum; starting over\n")
            continue
        raise FetchError(
            f"checksum mismatch for {url}: MD5 {digest}, expected {md5}; the download was removed "
            f"({part}). Run the command again; if it fails the same way the file at the source has changed"
        )


def _receive(url: str, part: Path, offset: int, *, progress: bool, stream: IO[str], timeout: float) -> str:
    """Append ``url``'s bytes from ``offset`` to ``part`` (restart when the server ignores the range);
    returns the MD5 of the complete file."""
    headers = {"User-Agent": "hsens_jax (hsens data fetch)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    received = 0
    try:
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the range starts at or past the end: .part is complete (or junk)
                e.close()
                return _md5_of(part)
            raise
        with response:
            resumed = offset > 0 and response.status == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise FetchError(f"{url}: the server answered the range request with an unexpected "
                                 f"Content-Range {response.headers.get('Content-Range')!r}")
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None and length.isdigit() else None
            digest = hashlib.md5(usedforsecurity=False)
            mode = "ab" if resumed else "wb"
            if resumed:
                with open(part, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
            bar = _ByteBar(part.name[: -len(".part")], total, offset, enabled=progress, stream=stream)
            try:
                with open(part, mode) as out:
                    while block := response.read(1 << 16):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
            finally:
                bar.close()
            if total is not None and offset + received < total:
                raise http.client.IncompleteRead(b"", total - offset - received)
            return digest.hexdigest()
    except urllib.error.HTTPError as e:
        raise FetchError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        kept = part.stat().st_size if part.is_file() else 0
        tail = (f"; {part} keeps the {kept} bytes received: run the same command again to resume"
                if kept else "")
        raise FetchError(f"downloading {url} failed ({reason}){tail}") from None
    except FetchError:
        raise
    except OSError as e:
        raise FetchError(f"writing {part} failed: {e}") from None


class _ByteBar:
    """One line of download progress: file, bar, percent, MB done / total, MB/s (stderr)."""

    def __init__(self, label: str, total: int | None, done: int, *, enabled: bool, stream: IO[str], width: int = 24):
        self.label, self.total, self.done = label, total, done
        self.enabled, self.stream, self.width = enabled, stream, width
        self.start, self.start_done = time.perf_counter(), done
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0
        if enabled and not self._tty:
            self.stream.write(self._line() + "\n")

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and self._tty and now - self._last >= 0.1:
            self._last = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write(("\r" if self._tty else "") + self._line() + "\n")
            self.stream.flush()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.start_done) / elapsed / 1e6 if elapsed > 0 else 0.0
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            return (f"{self.label} [{bar}] {frac:6.1%} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
                    f"{rate:.1f} MB/s")
        return f"{self.label} {self.done / 1e6:.1f} MB {rate:.1f} MB/s"
