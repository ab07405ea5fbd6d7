"""Command line: ``python -m lossbook <command>``.

Commands
--------
list
    Show the named experiments and their sizes per budget.
run NAME [--budget smoke|cpu|gpu|auto] [--out DIR] [--device auto|cpu|cuda] [--quiet]
        [--restart]
    Run an experiment and write ``DIR/NAME.json`` (plus figures); rerunning the same
    command after a kill resumes from the checkpoints under ``DIR/NAME/``. ``--restart``
    deletes this budget's checkpoints of the experiment first (e.g. after a damaged
    checkpoint was reported).
show NAME [--out DIR]
    Print the table and findings stored in ``DIR/NAME.json`` by ``run``.
coursework student OUT [--root ROOT]
    Write the student version of every chapter (solutions replaced by stubs that keep the
    exercise checks) and a README to ``OUT``.
coursework nbgrader COURSE [--root ROOT] [--chapter 01_pixel_losses ...]
    Write an nbgrader source course (solution cells and autograded check cells marked,
    ``nbgrader_config.py``); then ``nbgrader generate_assignment`` / ``autograde``.
sync-notebooks [ROOT]
    Rewrite the setup cell of every notebook under ``ROOT/notebooks`` from the
    repository URL in ``ROOT/_config.yml`` and strip outputs.

Expected failures (a bad budget or device, an unwritable ``--out``, a damaged or
foreign checkpoint, a checkpoint in use by another run, a damaged results file ...)
print one line starting with ``error:`` on stderr and exit with status 2; set
``LOSSBOOK_DEBUG=1`` to see the traceback instead. ``--budget`` accepts the same
spellings as ``LOSSBOOK_BUDGET`` (case and surrounding spaces do not matter).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class UsageError(Exception):
    """An expected failure of a command: printed as one line, exit status 2."""


def _sync(args: argparse.Namespace) -> int:
    from ._notebooks import repository_url, sync_notebook

    root = Path(args.root)
    config = root / "_config.yml"
    if not config.is_file():
        raise UsageError(f"no _config.yml in {root.resolve()}; run sync-notebooks from the "
                         "repository root or pass it: python -m lossbook sync-notebooks ROOT")
    url = repository_url(config)
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


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device) if device != "auto" else None
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"unknown device {device!r} ({err}); use auto, cpu, cuda or "
                         "cuda:N") from None
    if dev is not None and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA GPU is available here; use "
                             "--device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: there are only "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev is not None and dev.type not in ("cpu", "mps"):
        raise UsageError(f"--device {device}: lossbook runs on auto, cpu or cuda[:N]")


def _restart(name: str, budget: str, out: Path) -> None:
    """Delete this budget's checkpoints of ``name`` (each under its lock)."""
    from .train import checkpoint_lock

    for ckpt in sorted((out / name).glob(f"{budget}-*/*.pt")):
        with checkpoint_lock(ckpt):
            ckpt.unlink()
        print(f"removed {ckpt}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from .budget import get_budget
    from .experiments import get_experiment, run_experiment
    from .train import check_output_path, clean_stale_temporaries

    exp = get_experiment(args.name)
    budget = get_budget(args.budget).name  # also checks LOSSBOOK_BUDGET when not given
    _check_device(args.device)
    out = Path(args.out)
    # every output path is checked before minutes of training, not after
    check_output_path(out, kind="dir")
    check_output_path(out / f"{exp.name}.json")
    check_output_path(out / exp.name, kind="dir")
    clean_stale_temporaries(out / f"{exp.name}.json")
    if args.restart:
        _restart(exp.name, budget, out)
    result = run_experiment(args.name, budget=budget, out=out, device=args.device,
                            progress=not args.quiet)
    p = result.payload
    print(f"{p['experiment']} | budget {p['budget']} | device {p['device']} | "
          f"{p['seconds']:.1f} s")
    _print_result(exp, result)
    print(f"wrote {result.path}")
    return 0


def _print_result(exp, result) -> None:
    p = result.payload
    print(result.table())
    if exp.findings is not None:
        for line in exp.findings(result):
            print(f"- {line}")
    for method, why in p.get("missing_losses", {}).items():
        print(f"skipped {method}: {why}")


def _show(args: argparse.Namespace) -> int:
    import json

    from .experiments import get_experiment
    from .experiments.core import RunResult

    exp = get_experiment(args.name)
    path = Path(args.out) / f"{exp.name}.json"
    if not path.is_file():
        raise UsageError(f"no results at {path}; run `python -m lossbook run {exp.name} "
                         f"--out {args.out}` first")
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise ValueError("no 'results' list")
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is damaged or not a lossbook results file ({err}); "
                         f"delete it and run `python -m lossbook run {exp.name}` again "
                         "(checkpoints make that quick)") from None
    print(f"{payload.get('experiment')} | budget {payload.get('budget')} | device "
          f"{payload.get('device')}")
    _print_result(exp, RunResult(payload=payload, path=path))
    return 0


def _budget_name(value: str) -> str:
    """``--budget``: the spellings ``LOSSBOOK_BUDGET`` accepts (case-insensitive)."""
    from .budget import get_budget

    try:
        return get_budget(value).name
    except ValueError:
        from .budget import BUDGETS

        raise argparse.ArgumentTypeError(
            f"unknown budget {value!r}; choose {', '.join(BUDGETS)} or auto (any case)"
        ) from None


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (``error: ...``) and exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _coursework(args: argparse.Namespace) -> int:
    from . import coursework

    if args.kind == "student":
        if args.chapter:
            raise UsageError("--chapter applies to 'coursework nbgrader' only; 'coursework "
                             "student' writes every chapter.")
        written = coursework.write_student_versions(args.out, args.root)
        print(f"wrote {len(written)} student notebook(s) and README.md to {args.out}")
    else:
        written = coursework.write_nbgrader_course(args.out, args.root, args.chapter)
        print(f"wrote an nbgrader source course with {len(written)} assignment(s) to "
              f"{args.out}; next: cd {args.out} && nbgrader generate_assignment <chapter>")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lossbook", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("sync-notebooks", help="regenerate the setup cells, strip outputs")
    p.add_argument("root", nargs="?", default=".", help="repository root (default: .)")
    p.set_defaults(func=_sync)
    p = sub.add_parser("list", help="show the named experiments")
    p.set_defaults(func=_list)
    p = sub.add_parser("run", help="run a named experiment and write DIR/NAME.json")
    p.add_argument("name", help="experiment name (see `list`)")
    p.add_argument("--budget", type=_budget_name, default=None,
                   help="smoke, cpu, gpu or auto, any case (default: $LOSSBOOK_BUDGET, else "
                        "gpu with CUDA, cpu without)")
    p.add_argument("--out", default="runs", help="output directory (default: runs)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--restart", action="store_true",
                   help="delete this budget's checkpoints of the experiment and start over")
    p.set_defaults(func=_run)
    p = sub.add_parser("coursework", help="student notebooks, or an nbgrader source course")
    p.add_argument("kind", choices=["student", "nbgrader"],
                   help="student: solutions replaced by stubs; nbgrader: a source course")
    p.add_argument("out", help="output directory (the course root for nbgrader)")
    p.add_argument("--root", default=".", help="repository root (default: .)")
    p.add_argument("--chapter", action="append", default=None,
                   help="only this chapter, e.g. 01_pixel_losses (repeatable; default: all)")
    p.set_defaults(func=_coursework)
    p = sub.add_parser("show", help="print the results stored in DIR/NAME.json")
    p.add_argument("name", help="experiment name (see `list`)")
    p.add_argument("--out", default="runs", help="output directory (default: runs)")
    p.set_defaults(func=_show)
    return parser


def _one_line(err: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; expected failures print one ``error:`` line and return 2."""
    from .train import CheckpointLockedError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError, OSError, CheckpointLockedError) as err:
        if os.environ.get("LOSSBOOK_DEBUG"):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the checkpoints",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
