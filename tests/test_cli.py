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


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_bad_budget_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "denoise-losses", "--budget", "huge"])
    assert exit_.value.code == 2
    assert "unknown budget 'huge'" in _one_error_line(capsys)


@pytest.mark.parametrize("spelling", ["SMOKE", " Smoke ", "smoke"])
def test_budget_accepts_the_spellings_of_the_variable(spelling):
    from lossbook.budget import get_budget

    args = build_parser().parse_args(["run", "denoise-losses", "--budget", spelling])
    assert args.budget == "smoke" == get_budget(spelling).name


def test_expected_failures_are_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("LOSSBOOK_BUDGET", "enormous")
    assert main(["run", "denoise-losses", "--out", str(tmp_path)]) == 2
    assert "unknown budget 'enormous' (from the environment variable" in _one_error_line(capsys)
    monkeypatch.setenv("LOSSBOOK_BUDGET", "smoke")
    if not torch.cuda.is_available():
        assert main(["run", "denoise-losses", "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA GPU is available" in _one_error_line(capsys)
    assert main(["run", "denoise-losses", "--device", "gpu", "--out", str(tmp_path)]) == 2
    assert "unknown device 'gpu'" in _one_error_line(capsys)
    # an --out that is a file, and a directory where the JSON goes: refused before work
    (tmp_path / "afile").write_text("x")
    assert main(["run", "denoise-losses", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file, but it must be a directory" in _one_error_line(capsys)
    (tmp_path / "o" / "denoise-losses.json").mkdir(parents=True)
    assert main(["run", "denoise-losses", "--out", str(tmp_path / "o")]) == 2
    assert "denoise-losses.json is a directory" in _one_error_line(capsys)
    # sync-notebooks without a _config.yml
    assert main(["sync-notebooks", str(tmp_path)]) == 2
    assert "no _config.yml" in _one_error_line(capsys)
    # show: missing and damaged results
    assert main(["show", "denoise-losses", "--out", str(tmp_path)]) == 2
    assert "no results at" in _one_error_line(capsys)
    (tmp_path / "denoise-losses.json").write_text('{"experiment": "denoise-losses", "resu')
    assert main(["show", "denoise-losses", "--out", str(tmp_path)]) == 2
    assert "is damaged or not a lossbook results file" in _one_error_line(capsys)
    # usage errors of argparse itself are one line too
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert exit_.value.code == 2 and "required" in _one_error_line(capsys)


def test_a_damaged_checkpoint_is_one_line_and_restart_starts_over(tmp_path, monkeypatch,
                                                                  capsys):
    from lossbook.experiments.core import _sizes_hash

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sizes = get_experiment("despeckle-domains").sizes_for("smoke")
    work = tmp_path / "despeckle-domains" / f"smoke-{_sizes_hash(sizes)}"
    work.mkdir(parents=True)
    bad = work / "mse__linear_.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    stale = tmp_path / f".despeckle-domains.json.tmp-{2**22 + 12345}"
    stale.write_text("{")
    argv = ["run", "despeckle-domains", "--budget", "smoke", "--out", str(tmp_path),
            "--quiet", "--device", "cpu"]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "mse__linear_.pt" in line and "--restart" in line
    assert bad.read_bytes() == b"PK\x03\x04 truncated"  # not overwritten
    assert not stale.exists()  # a dead process's temporary JSON is removed
    assert main(argv + ["--restart"]) == 0
    assert (tmp_path / "despeckle-domains.json").is_file()
    capsys.readouterr()
    assert main(["show", "despeckle-domains", "--out", str(tmp_path)]) == 0
    assert "MSE (linear)" in capsys.readouterr().out


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
