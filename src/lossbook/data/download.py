"""Verified downloads for optional, larger datasets (e.g. on Colab).

Nothing in the book needs the network: the offline corpus
(:func:`lossbook.data.load_image`) is enough for every chapter. Where a chapter
*can* use a larger public dataset, it fetches it with :func:`download`, which

* checks the file's SHA-256 against a known value (so a changed or corrupted file is
  never used),
* writes to a temporary file in the cache folder and renames it only once verified
  (so an interrupted download never leaves a half file under the final name),
* reuses a cached, verified file without touching the network,
* optionally extracts a zip or tar archive, refusing members that would land outside
  the target folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

__all__ = ["download", "sha256sum"]

_CHUNK = 1 << 20


def sha256sum(path: str | os.PathLike) -> str:
    """The SHA-256 of a file as 64 lowercase hex digits (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_sha(sha256: object) -> str:
    s = str(sha256).strip().lower()
    if len(s) != 64 or any(ch not in "0123456789abcdef" for ch in s):
        raise ValueError(
            f"sha256 must be 64 hexadecimal digits; got {sha256!r}. Compute it with "
            "lossbook.data.sha256sum(path) or `sha256sum FILE` on a trusted copy."
        )
    return s


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def _extract(archive: Path, dest: Path) -> Path:
    """Extract a zip/tar archive into ``dest`` (safely); return ``dest``."""
    root = dest.resolve()
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".part-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _inside(root, n)]
                if bad:
                    raise ValueError(f"refusing to extract {archive.name}: members {bad[:3]} "
                                     "would be written outside the target folder.")
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                bad = [m.name for m in members if not _inside(root, m.name)
                       or m.issym() or m.islnk()]
                if bad:
                    raise ValueError(f"refusing to extract {archive.name}: members {bad[:3]} "
                                     "are links or would be written outside the target "
                                     "folder.")
                if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and patched 3.10+)
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - old Pythons; members were checked above
                    tf.extractall(tmp, members=members)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def download(url: str, sha256: str, cache_dir: str | os.PathLike, *,
             filename: str | None = None, extract: bool = False,
             timeout: float = 60.0) -> Path:
    """Download ``url`` into ``cache_dir``, verify its SHA-256, optionally extract it.

    Parameters
    ----------
    url : str
        Where to fetch from (``https://``, ``http://`` or ``file://``; anything
        :func:`urllib.request.urlopen` opens).
    sha256 : str
        The expected SHA-256 of the file, 64 hex digits.
    cache_dir : str or path-like
        Folder for the file (created if missing). A file already there whose hash matches
        is returned at once, without the network.
    filename : str, optional
        Name in ``cache_dir``; by default the last component of the URL's path.
    extract : bool
        If the file is a zip or tar archive (gzip/bz2/xz included), extract it into the
        folder ``cache_dir/<filename without extension>`` (once; reused if present) and
        return that folder.
    timeout : float
        Seconds to wait for the server.

    Returns
    -------
    pathlib.Path
        The verified file, or the extraction folder when ``extract=True``.

    Raises
    ------
    ValueError
        If the downloaded file's SHA-256 differs from ``sha256`` (the file is deleted), if
        ``extract=True`` and the file is not an archive, or if an archive member would
        escape the target folder.
    ConnectionError
        If the URL cannot be reached (no network, wrong address, server error).
    """
    expected = _check_sha(sha256)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    name = filename or Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from {url!r}; pass filename=...")
    path = cache / name
    if not (path.is_file() and sha256sum(path) == expected):
        _fetch(url, path, expected, timeout)
    if not extract:
        return path
    if not _is_archive(path):
        raise ValueError(f"extract=True but {path.name} is not a zip or tar archive; "
                         "pass extract=False to get the file itself.")
    stem = name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    dest = cache / (stem if stem != name else name + ".d")
    marker = dest / ".lossbook-sha256"
    if marker.is_file() and marker.read_text().strip() == expected:
        return dest
    _extract(path, dest)
    marker.write_text(expected + "\n")
    return dest


def _fetch(url: str, path: Path, expected: str, timeout: float) -> None:
    """Stream ``url`` to a temporary file next to ``path``, verify, then rename."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(
                f"could not download {url}: {err}. Check the network connection (this "
                f"book runs offline without it), or fetch the file yourself and place it at "
                f"{path} (it must have SHA-256 {expected})."
            ) from err
        got = h.hexdigest()
        if got != expected:
            raise ValueError(
                f"SHA-256 mismatch for {url}: expected {expected}, got {got}. The file was "
                "deleted. The server may have changed the file or the download was corrupted; "
                "retry, or update the expected hash only if you trust the new file."
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
