"""Tests for the command line ``python -m lossbook`` (list, run, sync-notebooks).

The ``run`` test executes the real command in a subprocess at the smoke budget and
checks the JSON it writes against the in-process API (same numbers: the reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lossbook.__main__ import build_parser, main
from lossbook.experiments import DENOISE_METHODS, DENOISE_SIZES, get_experiment


def test_list_shows_experiments_and_sizes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "denoise-losses" in out and get_experiment("denoise-losses").title in out
    for budget in ("smoke", "cpu", "gpu"):
        assert f"{budget}: " in out
    assert f"steps={DENOISE_SIZES['cpu']['steps']}" in out
    assert "despeckle-domains" in out and get_experiment("despeckle-domains").title in out
    assert "chapter: notebooks/06_sar_speckle_db" in out


def test_unknown_experiment_is_an_error(capsys):
    assert main(["run", "nope", "--budget", "smoke"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_bad_budget_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["run", "denoise-losses", "--budget", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_sync_notebooks_is_still_a_command():
    args = build_parser().parse_args(["sync-notebooks", "somewhere"])
    assert args.command == "sync-notebooks" and args.root == "somewhere"


def test_run_smoke_writes_the_json(tmp_path, root):
    env = {**os.environ, "LOSSBOOK_BUDGET": "cpu", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "lossbook", "run", "denoise-losses", "--budget", "smoke",
         "--out", str(tmp_path), "--quiet"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote" in run.stdout and "TV (Chambolle)" in run.stdout
    payload = json.loads((tmp_path / "denoise-losses.json").read_text())
    assert payload["experiment"] == "denoise-losses"
    assert payload["budget"] == "smoke"  # --budget wins over LOSSBOOK_BUDGET
    assert payload["device"] == "cpu" and payload["seconds"] > 0
    methods = [r["method"] for r in payload["results"]]
    assert methods[:3] == ["noisy input", "Gaussian filter", "TV (Chambolle)"]
    assert set(methods[3:]) | set(payload["missing_losses"]) == set(DENOISE_METHODS)
    for r in payload["results"]:
        assert {"method", "psnr", "ssim", "ms_ssim", "mae"} <= set(r)
    for name in payload["figures"]:
        assert (tmp_path / name).is_file()
