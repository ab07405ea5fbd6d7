"""Sphinx extension: drop duplicated <script> entries from every HTML page.

With jupyter-book 1.0.4, sphinx-thebe registers its inline configuration script twice,
which declares ``const THEBE_JS_URL`` twice and raises a page error in the browser.
Dropping exact duplicates (same file, same attributes, same inline body) fixes that and
changes nothing else.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    filename = getattr(script, "filename", str(script)) or ""  # inline: None or ""
    return (filename, tuple(sorted(attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
