r"""Open the built book in Debian's Chromium (via Playwright) and check every page.

For the landing page and every chapter listed in _toc.yml: no page errors (other than
those caused by blocked external requests), every <img> decoded, the chapter title
present, the Colab launch link pointing at the chapter's notebook, and the math typeset
by the book's own MathJax (served from _static, no CDN: every request leaving the local
server is blocked): every math element rendered, no raw TeX (``$$``, ``\(``, ``\frac``
...) left in the visible prose. A full-page screenshot of each page, taken after
MathJax has finished, is saved under <root>/_build/screenshots/.

Usage: python .ci/browser_check.py [_build/html] [--root BOOK_ROOT]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import sys
import threading
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
# Page errors that only arise because a script from a CDN was blocked (no network here).
# MathJax is not among them: the book serves its own copy, so a MathJax error is real.
EXTERNAL_SYMPTOMS = ("require is not defined", "define is not defined",
                     "Failed to fetch", "thebe", "Script error")
# TeX that MathJax should have replaced; searched in the visible text outside code.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\(frac|mathbb|mathrm|sum|sqrt|begin|left|"
                     r"right|alpha|sigma|mu|operatorname|log|exp)(?![a-zA-Z])")
MATH_JS = """async () => {
  const loaded = !!(window.MathJax && MathJax.startup && MathJax.startup.promise);
  if (loaded) { await MathJax.startup.promise; }
  const script = Array.from(document.scripts).find(s => /tex-(chtml|svg|mml)/.test(s.src));
  const nodes = Array.from(document.querySelectorAll('.math'));
  const unrendered = nodes.filter(n => !n.querySelector('mjx-container'))
                          .map(n => n.textContent.trim().slice(0, 60));
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, .highlight, mjx-container, script, style, .cell_input')
      .forEach(e => e.remove());
  return {loaded: loaded, src: script ? script.src : null, n_math: nodes.length,
          n_rendered: document.querySelectorAll('mjx-container').length,
          unrendered: unrendered, text: main.textContent};
}"""


def repository(root: Path = ROOT):
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    repo = cfg["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def _toc_entries(entries):
    for e in entries or []:
        if "file" in e:
            yield e["file"]
        yield from _toc_entries(e.get("chapters"))
        yield from _toc_entries(e.get("sections"))


def toc_files(root: Path = ROOT) -> list[str]:
    """Every file the table of contents lists (parts or a flat chapter list), in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = list(_toc_entries(toc.get("chapters")))
    for part in toc.get("parts", []):
        files += list(_toc_entries(part.get("chapters")))
    return files


def _title(root: Path, path: str) -> str:
    """The first heading of a page (a notebook's first markdown cell, or a .md file)."""
    if (root / f"{path}.ipynb").exists():
        nb = json.loads((root / f"{path}.ipynb").read_text())
        text = "".join(next(c for c in nb["cells"] if c["cell_type"] == "markdown")["source"])
    else:
        text = (root / f"{path}.md").read_text()
    first = next(line for line in text.splitlines() if line.startswith("# "))
    return first.lstrip("# ").strip()


def pages(root: Path = ROOT):
    """(html path, title, Colab URL or None, screenshot name) for every page to check."""
    repo_url, branch = repository(root)
    colab_base = "https://colab.research.google.com/github/" + repo_url.split("github.com/")[1]
    toc_root = yaml.safe_load((root / "_toc.yml").read_text())["root"]
    out = [("index.html", _title(root, toc_root).split(":")[0], None, "index")]
    for path in toc_files(root):
        colab = None
        if (root / f"{path}.ipynb").exists():
            colab = f"{colab_base}/blob/{branch}/{path}.ipynb"
        out.append((f"{path}.html", _title(root, path), colab, path.replace("/", "__")))
    return out, toc_root


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):  # keep CI output readable
        pass


def serve(directory: Path):
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_math(page, base: str) -> tuple[list[str], int]:
    """Problems with the page's math, and the number of typeset formulas."""
    info = page.evaluate(MATH_JS)
    problems = []
    if info["n_math"] and not info["loaded"]:  # Sphinx adds MathJax only where there is math
        problems.append(f"MathJax did not load for {info['n_math']} math elements "
                        f"(script: {info['src']}; is it served from _static?)")
    if info["src"] and not info["src"].startswith(base):
        problems.append(f"MathJax is not served by the book itself: {info['src']}")
    if info["unrendered"]:
        problems.append(f"{len(info['unrendered'])} of {info['n_math']} math elements not "
                        f"typeset: {info['unrendered'][:3]}")
    raw = sorted({m.group(0) for m in RAW_TEX.finditer(info["text"])})
    if raw:
        where = RAW_TEX.search(info["text"]).start()
        problems.append(f"raw TeX left in the visible text: {raw[:8]} near "
                        f"{info['text'][max(0, where - 40):where + 40]!r}")
    return problems, info["n_rendered"]


def check_page(page, url, *, title, colab=None, shot, base, toc_root):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load", timeout=60_000)
    if url.endswith("/index.html"):  # the landing page redirects to the root document
        page.wait_for_url(f"**/{toc_root}.html", timeout=30_000)
        page.wait_for_load_state("load")
    page.wait_for_timeout(300)
    problems, n_math = check_math(page, base)
    real = [e for e in errors if not any(s in e for s in EXTERNAL_SYMPTOMS)]
    if real:
        problems.append(f"page errors: {real}")
    bad_imgs = page.evaluate(
        """() => Array.from(document.images)
              .filter(i => !(i.complete && i.naturalWidth > 0))
              .map(i => i.getAttribute('src').slice(0, 80))"""
    )
    n_imgs = page.evaluate("() => document.images.length")
    if bad_imgs:
        problems.append(f"{len(bad_imgs)} of {n_imgs} images not decoded: {bad_imgs[:5]}")
    h1 = page.evaluate("() => Array.from(document.querySelectorAll('h1')).map(h => h.innerText)")
    if not any(title in h for h in h1):
        problems.append(f"title {title!r} not among the h1 headings {h1}")
    if colab is not None:
        hrefs = page.evaluate(
            """() => Array.from(document.querySelectorAll('a'))
                  .map(a => a.href).filter(h => h.includes('colab.research.google.com'))"""
        )
        if colab not in hrefs:
            problems.append(f"Colab link {colab} not found (Colab links: {hrefs})")
    page.screenshot(path=str(shot), full_page=True)
    return problems, n_imgs, n_math, len(errors) - len(real)


def main(html_dir: str, root: Path = ROOT) -> int:
    html = Path(html_dir).resolve()
    root = Path(root).resolve()
    shots = root / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    server = serve(html)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    todo, toc_root = pages(root)
    failures, total_math = 0, 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith(base) or route.request.url.startswith(
                          "data:") else route.abort())
        for rel, title, colab, name in todo:
            page = context.new_page()
            problems, n_imgs, n_math, ignored = check_page(
                page, f"{base}/{rel}", title=title, colab=colab, shot=shots / f"{name}.png",
                base=base, toc_root=toc_root)
            page.close()
            total_math += n_math
            status = "FAIL" if problems else "ok"
            print(f"[{status}] {rel}: {n_imgs} images, {n_math} formulas typeset, {ignored} "
                  f"page errors from blocked external scripts ignored")
            for prob in problems:
                print(f"    - {prob}")
            failures += bool(problems)
        browser.close()
    server.shutdown()
    if total_math == 0:
        print("FAIL: no formula was typeset on any page (the book has equations)")
        failures += 1
    print(f"{len(todo) - failures} of {len(todo)} pages passed; screenshots in {shots}")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="_build/html")
    parser.add_argument("--root", default=str(ROOT), help="the book's root (_toc.yml)")
    args = parser.parse_args()
    sys.exit(main(args.html, Path(args.root)))
