"""Verified downloads for optional, larger datasets (e.g. on Colab).

Nothing in the book needs the network: the offline corpus
(:func:`lossbook.data.load_image`) is enough for every chapter. Where a chapter
*can* use a larger public dataset, it fetches it with :func:`download`, which

* checks the file's SHA-256 against a known value (so a changed or corrupted file is
  never used),
* writes to a temporary file in the cache folder and renames it only once verified
  (so an interrupted download never leaves a half file under the final name),
* reuses a cached, verified file without touching the network,
* gives up after an overall ``deadline`` (a server that trickles one byte a second
  never trips a per-read ``timeout``), and removes ``.part`` files that an interrupted
  download left behind,
* refuses a ``filename`` that would leave the cache folder (``"../x"``, ``"/etc/x"``),
* optionally extracts a zip or tar archive, refusing members that would land outside
  the target folder.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
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


def _check_name(name: object, url: str) -> str:
    """A plain file name inside the cache folder: no separators, no ``..``, not absolute."""
    if not isinstance(name, str):
        raise TypeError(f"filename must be a str; got {type(name).__name__}.")
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or Path(name).is_absolute() or Path(name).name != name)
    if bad:
        raise ValueError(
            f"the file name {name!r} (from {'filename=' if name else url!r}) would not be a "
            "plain file inside cache_dir; give a name without path separators or '..', "
            "e.g. filename='data.zip' (use cache_dir to choose the folder)."
        )
    return name


def _positive_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds; got {type(value).__name__}.")
    v = float(value)
    if not (v > 0 and v != float("inf")):
        raise ValueError(f"{name} must be a positive, finite number of seconds; got {value!r}.")
    return v


def _remove_stale_parts(path: Path, older_than: float) -> list[Path]:
    """Delete ``NAME.*.part`` files of ``path`` not written to for ``older_than`` seconds.

    A download in progress writes at least every ``timeout`` seconds (or fails), so a
    ``.part`` file that old belongs to a download that was killed.
    """
    removed = []
    now = time.time()
    for part in path.parent.glob(f"{glob.escape(path.name)}.*.part"):
        try:
            if now - part.stat().st_mtime > older_than:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            pass
    return removed


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
             timeout: float = 60.0, deadline: float = 3600.0) -> Path:
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
        Name in ``cache_dir``; by default the last component of the URL's path. It must
        be a plain name (no ``/``, ``\\`` or ``..``): nothing is written outside
        ``cache_dir``.
    extract : bool
        If the file is a zip or tar archive (gzip/bz2/xz included), extract it into the
        folder ``cache_dir/<filename without extension>`` (once; reused if present) and
        return that folder.
    timeout : float
        Seconds to wait for the server on each connection or read.
    deadline : float
        Seconds the whole download may take (default 3600); a slower download is
        abandoned with ``TimeoutError`` (its partial file deleted). ``.part`` files of
        earlier downloads that were killed are removed.

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
    TimeoutError
        If the download takes longer than ``deadline`` seconds.
    """
    expected = _check_sha(sha256)
    timeout = _positive_seconds(timeout, "timeout")
    deadline = _positive_seconds(deadline, "deadline")
    if not isinstance(url, str):
        raise TypeError(f"url must be a str; got {type(url).__name__}.")
    if filename is None:
        name = Path(urllib.parse.urlparse(url).path).name
        if not name:
            raise ValueError(f"cannot derive a file name from {url!r}; pass filename=...")
    else:
        name = filename
    name = _check_name(name, url)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    _remove_stale_parts(path, older_than=2 * timeout + 60.0)
    if not (path.is_file() and sha256sum(path) == expected):
        _fetch(url, path, expected, timeout, deadline)
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


def _fetch(url: str, path: Path, expected: str, timeout: float, deadline: float) -> None:
    """Stream ``url`` to a temporary file next to ``path``, verify, then rename."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    start = time.monotonic()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                # read1 returns what one socket read brings, so the deadline is checked
                # between reads even when a server sends a byte at a time
                read = getattr(r, "read1", r.read)
                for chunk in iter(lambda: read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
                    if time.monotonic() - start > deadline:
                        raise TimeoutError(
                            f"downloading {url} took longer than the deadline of {deadline:g} "
                            f"s ({out.tell()} bytes so far); the partial file was deleted. "
                            "Retry later, pass a larger deadline=, or fetch the file "
                            f"yourself and place it at {path} (SHA-256 {expected})."
                        )
        except TimeoutError:
            raise
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
