"""Sphinx extension: a chapter is re-executed exactly when what it runs has changed.

jupyter-book 1.x's execution cache (``execute_notebooks: cache``, jupyter-cache under
myst-nb) keys a notebook on its code cells only. A chapter's outputs also depend on the
package it imports (``src/lossbook``), on ``LOSSBOOK_BUDGET`` and on the versions of the
package's runtime dependencies; with the cache alone, editing ``src/lossbook`` or
switching the budget would leave every chapter showing outputs of code that is no
longer there.

This extension computes a *fingerprint* of those inputs when Sphinx starts and

1. points myst-nb's cache at ``<cache>/<fingerprint>`` (``<cache>`` is
   ``_build/.jupyter_cache`` unless ``execute.cache`` names another folder), so a
   notebook's cached outputs are found only when its code *and* the fingerprint match;
2. stores the fingerprint in the config value ``lossbook_fingerprint`` (and the cache
   path in ``nb_execution_cache_path``), both of which Sphinx records with the build
   environment: when either differs from the last build, Sphinx re-reads every
   document, so every chapter is looked up in the new cache and executed there.

So: no change -> nothing is read or executed; one chapter's code changed -> that chapter
is executed; a prose-only edit -> that chapter is re-read from the cache; the package
source, the budget or a dependency version changed -> every chapter is executed. Going
back to an earlier fingerprint (e.g. the budget you built yesterday) finds its cache
folder again; the ``lossbook_cache_keep`` most recently used folders are kept.

Why here and not in the Makefile: every way of building (``make book``, a plain
``jupyter-book build .``, the CI workflow) gets the same rule.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

SCHEME = "1"  # bump to invalidate every cache folder when the rule itself changes
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def resolve_budget(value: str | None) -> str:
    """The budget name a chapter will use, as ``lossbook.budget.get_budget`` decides it.

    ``auto`` (or unset) becomes ``gpu`` when CUDA is available, else ``cpu``; torch is
    imported only in that case. Any other value is returned normalised (an unknown name
    makes the chapters fail with lossbook's own error message).
    """
    key = (value or "auto").strip().lower()
    if key in ("", "auto"):
        try:
            import torch
        except ImportError:  # no torch: the chapters will fail anyway
            return "auto"
        key = "gpu" if torch.cuda.is_available() else "cpu"
    return key


def source_digest(paths: list[Path]) -> str:
    """SHA-256 over every file below ``paths`` (relative names and contents).

    Byte-code caches and checkpoint folders are skipped; a missing path counts as empty.
    """
    h = hashlib.sha256()
    for base in paths:
        base = Path(base)
        files = [base] if base.is_file() else sorted(
            p for p in base.rglob("*")
            if p.is_file() and p.suffix not in _SKIP_SUFFIXES
            and not _SKIP_DIRS.intersection(p.relative_to(base).parts)
        )
        for p in files:
            rel = p.relative_to(base.parent).as_posix()
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def dependency_versions(pyproject: Path) -> dict[str, str]:
    """Installed versions of ``[project].dependencies`` in ``pyproject`` (plus Python)."""
    versions = {"python": sys.version.split()[0]}
    if not pyproject.is_file():
        return versions
    import tomllib

    deps = tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies", [])
    for dep in deps:
        name = re.split(r"[<>=!~\[ ;@]", dep.strip(), maxsplit=1)[0]
        try:
            versions[name.lower()] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name.lower()] = "missing"
    return versions


def fingerprint(root: Path, sources: list[str], budget: str | None,
                pyproject: str | None = "pyproject.toml") -> str:
    """The hex fingerprint of everything a chapter's outputs depend on besides its code."""
    root = Path(root)
    parts = [
        f"scheme={SCHEME}",
        f"budget={resolve_budget(budget)}",
        f"source={source_digest([root / s for s in sources])}",
    ]
    if pyproject:
        deps = dependency_versions(root / pyproject)
        parts += [f"{k}=={v}" for k, v in sorted(deps.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _prune(base: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used fingerprint folders in ``base``."""
    folders = [p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{16}", p.name)]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _on_config_inited(app, config) -> None:
    if config.nb_execution_mode != "cache":
        return
    root = Path(app.confdir)
    budget = os.environ.get("LOSSBOOK_BUDGET")
    fp = fingerprint(root, list(config.lossbook_fingerprint_sources), budget,
                     config.lossbook_fingerprint_pyproject)
    base = Path(config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if not base.is_absolute():
        base = root / base
    folder = base / fp[:16]
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    os.utime(folder, (now, now))  # marks it as the most recently used
    _prune(base, max(1, int(config.lossbook_cache_keep)))
    config.lossbook_fingerprint = fp
    config.nb_execution_cache_path = str(folder.resolve())
    print(f"lossbook: execution cache {folder} (budget {resolve_budget(budget)}, "
          f"fingerprint {fp[:16]})")


def setup(app):
    app.add_config_value("lossbook_fingerprint_sources", ["src/lossbook"], "env")
    app.add_config_value("lossbook_fingerprint_pyproject", "pyproject.toml", "env")
    app.add_config_value("lossbook_cache_keep", 6, "")
    app.add_config_value("lossbook_fingerprint", "", "env")
    # after myst-nb has registered nb_execution_cache_path; before builder-inited reads it
    app.connect("config-inited", _on_config_inited, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
