"""Open the built book in Debian's Chromium (via Playwright) and check every page.

For the landing page and every chapter listed in _toc.yml: no page errors (other than
those caused by blocked external requests), every <img> decoded, the chapter title
present, and the Colab launch link pointing at the chapter's notebook. A full-page
screenshot of each page is saved under _build/screenshots/.

Usage: python .ci/browser_check.py _build/html
"""

from __future__ import annotations

import functools
import http.server
import json
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
EXTERNAL_SYMPTOMS = ("MathJax", "require is not defined", "define is not defined",
                     "Failed to fetch", "thebe", "Script error")


def repository():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = []
    for part in toc["parts"]:
        for ch in part["chapters"]:
            path = ch["file"]
            if path.startswith("notebooks/"):
                nb = json.loads((ROOT / f"{path}.ipynb").read_text())
                first = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
                title = "".join(first["source"]).lstrip().splitlines()[0].lstrip("# ").strip()
                out.append((path, title))
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs):  # keep CI output readable
        pass


def serve(directory: Path):
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_page(page, url, *, title, colab=None, shot):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load", timeout=60_000)
    if url.endswith("/index.html"):  # the landing page redirects to the root document
        page.wait_for_url("**/book/*.html", timeout=30_000)
        page.wait_for_load_state("load")
    page.wait_for_timeout(300)
    problems = []
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
    return problems, n_imgs, len(errors) - len(real)


def main(html_dir: str) -> int:
    html = Path(html_dir).resolve()
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    repo_url, branch = repository()
    colab_base = "https://colab.research.google.com/github/" + repo_url.split("github.com/")[1]
    server = serve(html)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    intro = yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]
    intro_title = (ROOT / f"{intro}.md").read_text().lstrip().splitlines()[0].lstrip("# ")
    pages = [("index.html", intro_title.split(":")[0], None, "index")]
    for path, title in chapters():
        pages.append((f"{path}.html", title, f"{colab_base}/blob/{branch}/{path}.ipynb",
                      Path(path).name))
    failures = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith(base) or route.request.url.startswith(
                          "data:") else route.abort())
        for rel, title, colab, name in pages:
            page = context.new_page()
            problems, n_imgs, ignored = check_page(page, f"{base}/{rel}", title=title,
                                                   colab=colab, shot=shots / f"{name}.png")
            page.close()
            status = "FAIL" if problems else "ok"
            print(f"[{status}] {rel}: {n_imgs} images, {ignored} page errors from blocked "
                  f"external scripts ignored")
            for prob in problems:
                print(f"    - {prob}")
            failures += bool(problems)
        browser.close()
    server.shutdown()
    print(f"{len(pages) - failures} of {len(pages)} pages passed; screenshots in {shots}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/html"))
