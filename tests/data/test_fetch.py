"""Tests for hsens_jax.data.fetch and `hsens data fetch`, against a local HTTP server (http.server
in a thread) serving fixture files written here, with checksums computed here."""

import hashlib
import io
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hsens_jax.cli import main
from hsens_jax.data import FetchError, fetch_dataset, load_cifar10, load_fashion_mnist, load_mnist
from hsens_jax.data import fetch as fetch_module
from hsens_jax.data.fetch import SOURCES, Source
from hsens_jax.data.layout import CIFAR_ARCHIVE, IDX_STEMS
from tests.data.fixtures import write_cifar, write_mnist


class FileServer:
    """Serves ``files`` (URL path -> bytes) over HTTP/1.0 with byte ranges; ``mode[path]`` can be
    "truncate" (announce the full length, send half, drop the connection) or "no-range" (ignore
    Range headers). Every request's path and Range header is logged."""

    def __init__(self):
        self.files, self.mode, self.log = {}, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.log.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                mode = server.mode.get(self.path)
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and mode != "no-range":
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def publish(server, monkeypatch, name, folder: Path, file_names):
    """Serve ``folder``'s files as data set ``name`` of a mirror, and make them its checksums."""
    files = []
    for f in file_names:
        data = (folder / f).read_bytes()
        server.files[f"/{name}/{f}"] = data
        files.append((f, md5(data)))
    source = SOURCES[name]
    monkeypatch.setitem(SOURCES, name, Source(source.name, source.subdir, source.base_url, tuple(files)))
    return {f: (folder / f).read_bytes() for f in file_names}


@pytest.fixture
def mnist_remote(tmp_path, server, monkeypatch):
    remote = tmp_path / "remote"
    write_mnist(remote, n_train=60, n_test=20)
    return publish(server, monkeypatch, "mnist", remote / "mnist", [s + ".gz" for s in IDX_STEMS])


def test_fetch_mnist_into_the_layout_the_loader_reads(tmp_path, server, mnist_remote):
    out = io.StringIO()
    paths = fetch_dataset("mnist", tmp_path / "data", mirror=server.url, stream=out)
    assert [p.name for p in paths] == list(mnist_remote)
    for p in paths:
        assert p.parent == tmp_path / "data" / "mnist" and p.read_bytes() == mnist_remote[p.name]
    assert not list((tmp_path / "data" / "mnist").glob("*.part"))
    d, ref = load_mnist(tmp_path / "data"), load_mnist(tmp_path / "remote")
    np.testing.assert_array_equal(d.x_train, ref.x_train)
    np.testing.assert_array_equal(d.y_test, ref.y_test)
    text = out.getvalue()
    assert "train-images-idx3-ubyte.gz [" in text and "100.0%" in text  # the progress bar, on the stream
    # run again: everything is present with the right checksum, nothing is requested
    requests = len(server.log)
    out = io.StringIO()
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, stream=out)
    assert len(server.log) == requests and out.getvalue().count("already present (checksum ok)") == 4


def test_a_present_file_with_a_wrong_checksum_is_downloaded_again(tmp_path, server, mnist_remote):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"stale")
    out = io.StringIO()
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, stream=out, progress=False)
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == mnist_remote["t10k-labels-idx1-ubyte.gz"]
    assert "has the wrong checksum; downloading it again" in out.getvalue()


def test_checksum_mismatch_removes_the_download(tmp_path, server, mnist_remote, monkeypatch):
    source = SOURCES["mnist"]
    files = tuple((f, "0" * 32 if f.startswith("train-labels") else h) for f, h in source.files)
    monkeypatch.setitem(SOURCES, "mnist", Source(source.name, source.subdir, source.base_url, files))
    with pytest.raises(FetchError, match=f"checksum mismatch for {server.url}/mnist/train-labels-idx1-ubyte.gz: "
                                         f"MD5 {md5(mnist_remote['train-labels-idx1-ubyte.gz'])}, expected 0{{32}}"):
        fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=io.StringIO())
    folder = tmp_path / "data" / "mnist"
    assert not (folder / "train-labels-idx1-ubyte.gz").exists()
    assert not (folder / "train-labels-idx1-ubyte.gz.part").exists()
    assert (folder / "train-images-idx3-ubyte.gz").exists()  # the files before it are kept


def test_network_failure_keeps_the_partial_download_and_resumes(tmp_path, server, mnist_remote):
    path = "/mnist/train-images-idx3-ubyte.gz"
    server.mode[path] = "truncate"
    folder = tmp_path / "data" / "mnist"
    with pytest.raises(FetchError) as info:
        fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=io.StringIO())
    size = len(mnist_remote["train-images-idx3-ubyte.gz"])
    part = folder / "train-images-idx3-ubyte.gz.part"
    assert f"downloading {server.url}{path} failed" in str(info.value)
    assert f"{part} keeps the {size // 2} bytes received: run the same command again to resume" in str(info.value)
    assert not (folder / "train-images-idx3-ubyte.gz").exists() and part.stat().st_size == size // 2
    del server.mode[path]
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=io.StringIO())
    assert (path, f"bytes={size // 2}-") in server.log  # resumed where it stopped
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == mnist_remote["train-images-idx3-ubyte.gz"]
    assert not part.exists()


def test_resume_edge_cases(tmp_path, server, mnist_remote):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    name = "train-images-idx3-ubyte.gz"
    good = mnist_remote[name]
    # a server that ignores the range sends everything again: the .part is rewritten, not appended to
    server.mode[f"/mnist/{name}"] = "no-range"
    (folder / f"{name}.part").write_bytes(good[:100])
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=io.StringIO())
    assert (folder / name).read_bytes() == good
    # a .part that is not a prefix of the file fails the checksum once, then starts over
    (folder / name).unlink()
    del server.mode[f"/mnist/{name}"]
    (folder / f"{name}.part").write_bytes(b"x" * 100)
    out = io.StringIO()
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=out)
    assert (folder / name).read_bytes() == good and "starting over" in out.getvalue()
    # a complete .part (killed before the rename): the server answers 416, the checksum accepts it
    (folder / name).rename(folder / f"{name}.part")
    n = len(server.log)
    fetch_dataset("mnist", tmp_path / "data", mirror=server.url, progress=False, stream=io.StringIO())
    assert (folder / name).read_bytes() == good and server.log[n:] == [(f"/mnist/{name}", f"bytes={len(good)}-")]


def test_http_and_connection_errors(tmp_path, server, mnist_remote):
    del server.files["/mnist/t10k-images-idx3-ubyte.gz"]
    with pytest.raises(FetchError, match=f"downloading {server.url}/mnist/t10k-images-idx3-ubyte.gz failed: HTTP 404"):
        fetch_dataset("mnist", tmp_path / "a", mirror=server.url, progress=False, stream=io.StringIO())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match=f"downloading http://127.0.0.1:{port}/mnist/train-images-idx3-ubyte.gz "
                                         f"failed \\(.*refused"):
        fetch_dataset("mnist", tmp_path / "b", mirror=f"http://127.0.0.1:{port}/", progress=False,
                      stream=io.StringIO())
    with pytest.raises(ValueError, match="unknown data set 'imagenet' to fetch"):
        fetch_dataset("imagenet", tmp_path)


def test_cli_fetch_cifar10_and_fashion_mnist(tmp_path, server, monkeypatch, capsys):
    remote = tmp_path / "remote"
    batches = write_cifar(remote, as_archive=True)
    publish(server, monkeypatch, "cifar10", remote, [CIFAR_ARCHIVE])
    write_mnist(remote, subdir="fashion-mnist", n_train=30, n_test=10)
    publish(server, monkeypatch, "fashion-mnist", remote / "fashion-mnist", [s + ".gz" for s in IDX_STEMS])
    monkeypatch.setenv("HSENS_DATA", str(tmp_path / "data"))  # the default directory
    monkeypatch.setenv("HSENS_DATA_MIRROR", server.url)  # the mirror, from the environment
    assert main(["data", "fetch", "cifar10", "fashion-mnist", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert str(tmp_path / "data" / CIFAR_ARCHIVE) in out.out and "fashion-mnist:" in out.out
    np.testing.assert_array_equal(load_cifar10().y_test, batches["test_batch"][b"labels"])
    assert load_fashion_mnist().n_train + load_fashion_mnist().n_val == 30
    # --dir and --mirror on the command line; a failure is one line and status 2
    del server.files["/cifar10/" + CIFAR_ARCHIVE]
    monkeypatch.delenv("HSENS_DATA_MIRROR")
    assert main(["data", "fetch", "cifar10", "--dir", str(tmp_path / "other"), "--mirror", server.url + "/",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hsens data fetch: error: downloading ") and "HTTP 404" in err
    assert len(err.strip().splitlines()) == 1


def test_progress_bar_on_a_terminal(tmp_path, server, mnist_remote):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    fetch_dataset("mnist", tmp_path, mirror=server.url, stream=out)
    lines = out.getvalue().split("\n")
    bars = [line for line in lines if "t10k-labels-idx1-ubyte.gz [" in line]
    assert bars and bars[-1].startswith("\r") and "100.0%" in bars[-1] and "MB/s" in bars[-1]


def test_canonical_sources():
    """The real table: canonical URLs, the loaders' file names, MD5 sums as published (see the
    module docstring for where)."""
    assert SOURCES["mnist"].base_url == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert SOURCES["fashion-mnist"].base_url == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert SOURCES["cifar10"].base_url + SOURCES["cifar10"].files[0][0] == \
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    for name in ("mnist", "fashion-mnist"):
        assert [f for f, _ in SOURCES[name].files] == [s + ".gz" for s in IDX_STEMS]
        assert SOURCES[name].subdir == name
    assert dict(SOURCES["mnist"].files)["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert dict(SOURCES["cifar10"].files) == {CIFAR_ARCHIVE: "c58f30108f718f92721af3b95e74349a"}
    assert all(re.fullmatch("[0-9a-f]{32}", h) for s in SOURCES.values() for _, h in s.files)
    assert "torchvision" in fetch_module.__doc__


def test_no_user_facing_text_mentions_the_shared_folder():
    root = Path(__file__).resolve().parents[2]
    for path in [root / "README.md", *sorted((root / "hsens_jax").rglob("*.py"))]:
        text = path.read_text()
        assert "../shared" not in text and "fetch-datasets" not in text, path
