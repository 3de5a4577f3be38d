"""Download, checksum and safe extraction, against archives served on the loopback interface."""

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fastcifar.data import DataError, load_cifar10
from fastcifar.data.download import download_archive, extract_archive
from fastcifar.data.synthetic import make_arrays, write_synthetic_archive


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    return write_synthetic_archive(path, n_train=100, n_test=20, seed=4).read_bytes()


@pytest.fixture
def server(archive_bytes):
    """An HTTP server on 127.0.0.1 serving the archive intact, corrupted and cut short."""
    corrupted = bytearray(archive_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    routes = {
        "/good.tar.gz": (archive_bytes, len(archive_bytes)),
        "/corrupt.tar.gz": (bytes(corrupted), len(corrupted)),
        # the connection drops after half the promised bytes
        "/cut.tar.gz": (archive_bytes[: len(archive_bytes) // 2], len(archive_bytes)),
        # a complete response whose file is itself truncated
        "/short.tar.gz": (archive_bytes[: len(archive_bytes) // 2], len(archive_bytes) // 2),
    }
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args):  # keep test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.hits = hits
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def test_downloads_verifies_and_loads(tmp_path, server, archive_bytes):
    data = load_cifar10(tmp_path, url=server.url + "/good.tar.gz", md5=md5(archive_bytes),
                        progress=False)
    want_x, want_y = make_arrays(100, seed=4)
    np.testing.assert_array_equal(data.train_images, want_x)
    np.testing.assert_array_equal(data.train_labels, want_y)
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").is_file()
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".extract-*"))
    load_cifar10(tmp_path, url=server.url + "/good.tar.gz", md5=md5(archive_bytes))
    assert server.hits == ["/good.tar.gz"]  # the second load found the data on disk


def test_url_from_environment(tmp_path, server, archive_bytes, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA_URL", server.url + "/good.tar.gz")
    load_cifar10(tmp_path, md5=md5(archive_bytes), progress=False)
    assert server.hits == ["/good.tar.gz"]


def test_existing_verified_archive_is_reused(tmp_path, server, archive_bytes):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive_bytes)
    load_cifar10(tmp_path, url=server.url + "/good.tar.gz", md5=md5(archive_bytes))
    assert server.hits == []


@pytest.mark.parametrize("route", ["/corrupt.tar.gz", "/short.tar.gz"])
def test_checksum_mismatch_fails_and_leaves_nothing(tmp_path, server, archive_bytes, route):
    with pytest.raises(DataError, match="corrupt: MD5") as err:
        load_cifar10(tmp_path, url=server.url + route, md5=md5(archive_bytes), progress=False)
    assert "cifar-10-python.tar.gz" in str(err.value) and route in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_connection_cut_short_fails(tmp_path, server, archive_bytes):
    with pytest.raises(DataError, match="cut short") as err:
        load_cifar10(tmp_path, url=server.url + "/cut.tar.gz", md5=md5(archive_bytes),
                     progress=False)
    assert "--data-dir" in str(err.value)  # the fix is part of the message
    assert list(tmp_path.iterdir()) == []


def test_offline_says_where_it_looked(tmp_path):
    with socket.socket() as s:  # a port with nothing listening: the same refusal as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path, url=f"http://127.0.0.1:{port}/x.tar.gz", progress=False)
    message = str(err.value)
    assert "could not download" in message and str(tmp_path / "cifar-10-batches-py") in message
    assert "FASTCIFAR_DATA" in message and "internet" in message


def test_http_error_is_reported(tmp_path, server):
    with pytest.raises(DataError, match="404"):
        download_archive(tmp_path / "a.tar.gz", url=server.url + "/missing", progress=False)


def test_truncated_archive_on_disk_names_the_file(tmp_path, archive_bytes):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(archive_bytes[: len(archive_bytes) // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        extract_archive(archive, tmp_path / "out")
    assert str(archive) in str(err.value)
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()


def _tar_with(tmp_path, member: tarfile.TarInfo, content: bytes = b"x"):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        if member.isfile():
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
        else:
            tar.addfile(member)
    return path


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/absolute-escape.txt",
                                  "cifar-10-batches-py/../../escaped.txt"])
def test_extraction_refuses_path_escapes(tmp_path, name):
    archive = _tar_with(tmp_path, tarfile.TarInfo(name))
    with pytest.raises(DataError, match="escape"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not list((tmp_path / "out").iterdir())


def test_extraction_refuses_links(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DataError, match="link"):
        extract_archive(_tar_with(tmp_path, link), tmp_path / "out")
