"""Tests for tutorial_utils.plumbing.download: extracting ml-1m.zip, downloading it from a
local server.

Nothing here touches the network beyond a server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import socket
import stat
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_movielens_files import GOOD_RATINGS

from tutorial_utils.plumbing import download, movielens_files, synthetic_movielens


def dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic set with the default size, shared by the tests that only read it."""
    return synthetic_movielens.make_synthetic_movielens(
        tmp_path_factory.mktemp("synthetic") / "ml-1m"
    )


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


def zip_folder(folder: Path, zip_path: Path, prefix: str = "ml-1m/") -> Path:
    """Zip the .dat files of ``folder`` under ``prefix`` (stored, for speed)."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in ("ratings.dat", "movies.dat", "users.dat"):
            archive.write(folder / name, prefix + name)
    return zip_path


def test_corrupt_zip_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "ml-1m.zip"
    bogus.write_bytes(b"this is not a zip archive" * 10)
    dest = tmp_path / "dest"
    with pytest.raises(movielens_files.DataFormatError, match=r"ml-1m\.zip: not a valid zip"):
        download.extract_ml1m(bogus, dest)
    assert list(dest.iterdir()) == []


def test_zip_with_bad_crc_is_rejected(tmp_path: Path) -> None:
    zip_path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-1m/ratings.dat", GOOD_RATINGS)
    content = zip_path.read_bytes()
    zip_path.write_bytes(content.replace(b"978300760", b"978300761"))
    with pytest.raises(movielens_files.DataFormatError) as caught:
        download.extract_ml1m(zip_path, tmp_path / "dest")
    assert "ml-1m.zip" in str(caught.value) and "ml-1m/ratings.dat" in str(caught.value)


def _symlink_member(name: str) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name)
    member.external_attr = (stat.S_IFLNK | 0o777) << 16
    return member


@pytest.mark.parametrize(
    "member",
    [
        zipfile.ZipInfo("ml-1m/../../evil.dat"),
        zipfile.ZipInfo("../evil.dat"),
        zipfile.ZipInfo("/tmp/evil.dat"),
        _symlink_member("ml-1m/evil.dat"),
    ],
    ids=["nested-dotdot", "dotdot", "absolute", "symlink"],
)
def test_zip_slip_members_are_rejected(tmp_path: Path, member: zipfile.ZipInfo) -> None:
    zip_path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", GOOD_RATINGS)
        archive.writestr(member, "../../outside")
    dest = tmp_path / "dest"
    with pytest.raises(movielens_files.DataFormatError) as caught:
        download.extract_ml1m(zip_path, dest)
    assert "ml-1m.zip" in str(caught.value) and member.filename in str(caught.value)
    assert list(dest.iterdir()) == []
    assert not list(tmp_path.rglob("evil.dat"))


def test_zip_without_movielens_content_leaves_nothing(tmp_path: Path, synthetic_dir: Path) -> None:
    zip_path = zip_folder(synthetic_dir, tmp_path / "ml-1m.zip")
    dest = tmp_path / "dest"
    with pytest.raises(
        movielens_files.DataFormatError, match=r"ml-1m\.zip: does not hold MovieLens 1M"
    ):
        download.extract_ml1m(zip_path, dest)
    assert list(dest.iterdir()) == []


# --------------------------------------------------------------------------------------
# Download from a server on 127.0.0.1
# --------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; paths starting with /truncated promise more than they send."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        name = self.path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        announced = len(body) + (1000 if self.path.startswith("/truncated/") else 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@contextlib.contextmanager
def serving_zip_of(folder: Path, workdir: Path) -> Iterator[tuple[str, bytes]]:
    """A server on 127.0.0.1 serving ``folder`` zipped as ml-1m.zip; yields (base URL, bytes)."""
    zip_bytes = zip_folder(folder, workdir / "served.zip").read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"ml-1m.zip": zip_bytes}  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", zip_bytes
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server(tmp_path: Path, synthetic_dir: Path) -> Iterator[tuple[str, bytes]]:
    """A server on 127.0.0.1 serving a small ml-1m.zip; yields (base URL, zip bytes)."""
    with serving_zip_of(synthetic_dir, tmp_path) as served:
        yield served


def test_download_happy_path(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, zip_bytes = server
    cache = tmp_path / "downloads"
    md5 = hashlib.md5(zip_bytes).hexdigest()
    path = download.download_ml1m(f"{base}/ml-1m.zip", cache, md5=md5, progress=True)
    assert path == cache / "ml-1m.zip"
    assert path.read_bytes() == zip_bytes
    assert [p.name for p in cache.iterdir()] == ["ml-1m.zip"]


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, _ = server
    cache = tmp_path / "downloads"
    with pytest.raises(movielens_files.DataFormatError) as caught:
        download.download_ml1m(f"{base}/ml-1m.zip", cache, md5="0" * 32, progress=False)
    assert "ml-1m.zip" in str(caught.value) and "md5" in str(caught.value)
    assert list(cache.iterdir()) == []


def test_truncated_download_leaves_nothing(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, zip_bytes = server
    cache = tmp_path / "downloads"
    with pytest.raises(movielens_files.DataFormatError, match="truncated") as caught:
        download.download_ml1m(f"{base}/truncated/ml-1m.zip", cache, md5=None, progress=False)
    assert "ml-1m.zip" in str(caught.value)
    assert f"of {len(zip_bytes) + 1000:,} bytes" in str(caught.value)
    assert list(cache.iterdir()) == []


def test_http_errors_are_unavailable(tmp_path: Path, server: tuple[str, bytes]) -> None:
    base, _ = server
    cache = tmp_path / "downloads"
    with pytest.raises(download.DataUnavailableError, match="HTTP 404"):
        download.download_ml1m(f"{base}/missing.zip", cache, progress=False)
    with pytest.raises(download.DataUnavailableError, match="FEDRECON_DATA_DIR"):
        download.download_ml1m(f"http://127.0.0.1:{dead_port()}/ml-1m.zip", cache, progress=False)
    assert list(cache.iterdir()) == []


def test_plain_http_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to open a connection")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)
    with pytest.raises(ValueError, match="only https"):
        download.download_ml1m("http://example.com/ml-1m.zip", tmp_path, progress=False)
    with pytest.raises(ValueError, match="only https"):
        download.download_ml1m("ftp://127.0.0.1/ml-1m.zip", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
