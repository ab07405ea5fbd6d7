"""Command line: ``python -m lossbook <command>``.

Commands
--------
list
    Show the named experiments and their sizes per budget.
run NAME [--budget smoke|cpu|gpu] [--out DIR] [--device auto|cpu|cuda] [--quiet]
    Run an experiment and write ``DIR/NAME.json`` (plus figures); rerunning the same
    command after a kill resumes from the checkpoints under ``DIR/NAME/``.
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


def _list(args: argparse.Namespace) -> int:
    from .experiments import list_experiments

    for exp in list_experiments():
        print(f"{exp.name}: {exp.title}")
        if exp.chapter:
            print(f"    chapter: {exp.chapter}")
        for budget, sizes in exp.sizes.items():
            shown = ", ".join(f"{k}={v}" for k, v in sizes.items())
            print(f"    {budget:>5}: {shown}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .experiments import get_experiment, run_experiment

    try:
        exp = get_experiment(args.name)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = run_experiment(args.name, budget=args.budget, out=args.out, device=args.device,
                            progress=not args.quiet)
    p = result.payload
    print(f"{p['experiment']} | budget {p['budget']} | device {p['device']} | "
          f"{p['seconds']:.1f} s")
    print(result.table())
    if exp.findings is not None:
        for line in exp.findings(result):
            print(f"- {line}")
    for method, why in p.get("missing_losses", {}).items():
        print(f"skipped {method}: {why}")
    print(f"wrote {result.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lossbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sync-notebooks", help="regenerate the setup cells, strip outputs")
    p.add_argument("root", nargs="?", default=".", help="repository root (default: .)")
    p.set_defaults(func=_sync)
    p = sub.add_parser("list", help="show the named experiments")
    p.set_defaults(func=_list)
    p = sub.add_parser("run", help="run a named experiment and write DIR/NAME.json")
    p.add_argument("name", help="experiment name (see `list`)")
    p.add_argument("--budget", choices=["smoke", "cpu", "gpu", "auto"], default=None,
                   help="compute budget (default: $LOSSBOOK_BUDGET, else gpu with CUDA, cpu "
                        "without)")
    p.add_argument("--out", default="runs", help="output directory (default: runs)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
