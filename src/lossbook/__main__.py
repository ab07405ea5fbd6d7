"""Command line: ``python -m lossbook <command>``.

Commands
--------
sync-notebooks [ROOT]
    Rewrite the setup cell of every notebook under ``ROOT/notebooks`` from the
    repository URL in ``ROOT/_config.yml`` and strip outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _sync(args: argparse.Namespace) -> int:
    from ._notebooks import repository_url, sync_notebook

    root = Path(args.root)
    url = repository_url(root / "_config.yml")
    changed = [p for p in sorted((root / "notebooks").glob("*.ipynb")) if sync_notebook(p, url)]
    for p in changed:
        print(f"updated {p}")
    print(f"{len(changed)} notebook(s) updated; repository {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lossbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync-notebooks", help="regenerate the setup cells, strip outputs")
    p.add_argument("root", nargs="?", default=".", help="repository root (default: .)")
    p.set_defaults(func=_sync)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
