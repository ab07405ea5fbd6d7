"""Numbers in prose (DESIGN §4): a decimal number in a chapter's text is either inserted
from the run with ``{glue:text}`` or is a constant listed here with where it comes from.

A number that a run computes and the prose types in goes stale when the code, the budget
or a library changes; this test makes every such number visible. To add a number to a
chapter: glue it (``lossbook.viz.glue``), or, if it is a constant of the method, a
closed-form value or a number quoted from a cited paper, add it below with its reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

CONSTANTS = {
    # SSIM and MS-SSIM (Wang et al. 2004, 2003)
    "0.01": "K1 of SSIM; also a fixed loss weight stated as a choice",
    "0.03": "K2 of SSIM",
    "1.5": "sigma of SSIM's Gaussian window",
    "3.5": "scikit-image truncates its Gaussian at 3.5 sigma",
    "0.0448": "MS-SSIM weight beta_1", "0.2856": "MS-SSIM weight beta_2",
    "0.3001": "MS-SSIM weight beta_3", "0.2363": "MS-SSIM weight beta_4",
    "0.1333": "MS-SSIM weight beta_5",
    "4.5": "beta_1 = 0.0448 as a percentage",
    "0.9900": "Wang et al. 2004, Fig. 2, quoted as the paper's number",
    "0.6949": "Wang et al. 2004, Fig. 2, quoted as the paper's number",
    # weights of published or seed recipes, stated as inputs
    "0.84": "alpha of Zhao et al.'s Mix loss; the seed's SSIM weight",
    "0.16": "the seed's MSE weight in 0.16/0.84",
    "0.5": "the seed's balanced 0.5/0.5 (also 1/2, Nyquist 0.5 cycles/pixel, a quantile)",
    "0.025": "alpha of Zhao et al.'s released code",
    "0.002": "the TV weight of ID-CNN as reimplemented",
    "0.1": "fixed inputs stated as such (a weight, a residual scaling, a 0.1 dB example)",
    "0.25": "the cutoff of the sharpness measure, a stated parameter",
    "0.02": "Huber's delta, a stated parameter",
    # closed forms and exact arithmetic
    "48.1": "20 log10(255)",
    "0.032": "sqrt(1e-3)",
    "1.27": "4 / pi",
    "1.18": "1e-6 * 8 * 384 * 384, the translated weight of an exercise",
    "0.0625": "2^-4",
    "4.343": "10 / ln 10",
    "-0.5772": "minus the Euler-Mascheroni constant: E[ln s] for one look",
    "-2.5": "E[10 log10 s] for one look, rounded (DESIGN §5)",
    "-2.51": "E[10 log10 s] for one look, rounded",
    "5.57": "std of 10 log10 s for one look (pi / sqrt 6 in nepers)",
    "5.6": "std of 10 log10 s for one look, rounded",
    "0.56": "exp(psi(1) - ln 1), the one-look log bias as a factor",
    "1.96": "the 97.5 % quantile of the standard normal",
    "2.5": "a percentile of a 95 % interval",
    "97.5": "a percentile of a 95 % interval",
    "1.7": "the logistic-to-normal scale factor",
    "1.8": "pi / sqrt(3)",
    "1.32": "20 log10(255 / 219)",
    "0.299": "65.481 / 219 (ITU-R BT.601)",
    "65.481": "ITU-R BT.601", "128.553": "ITU-R BT.601", "24.966": "ITU-R BT.601",
    "-0.5": "Keys' cubic kernel parameter in Pillow and MATLAB",
    "-0.75": "Keys' cubic kernel parameter in PyTorch",
    "0.4": "the frequency of a synthetic test pattern, a stated input",
    # inputs of demonstrations, stated in the text next to the code that uses them
    "0.05": "a brightness change in an example", "0.15": "a shift given to the image",
    "0.3": "an input probability / threshold stated in the text",
    "0.7": "an input probability stated in the text",
    "0.8": "a brightness threshold stated in the text",
    "2.0": "a blur width passed in an exercise", "4.0": "looks passed in an exercise",
}

_NUMBER = re.compile(r"(?<![\w.\\{])[-−]?\d+\.\d+(?![\w.])")


def _prose(path: Path) -> str:
    nb = json.loads(path.read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", "", text)  # glued values come from the run
    return re.sub(r"`[^`]*`", "", text)  # code spans are code (arguments, calls)


def typed_numbers(path: Path) -> dict[str, str]:
    """Decimal numbers typed into a chapter's markdown, with some context each."""
    text = _prose(path)
    return {m.group(0).replace("−", "-"): text[max(0, m.start() - 40):m.end() + 20]
            for m in _NUMBER.finditer(text)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_typed_number_is_glued_or_a_known_constant(path):
    unknown = {n: ctx for n, ctx in typed_numbers(path).items() if n not in CONSTANTS}
    assert not unknown, (
        f"{path.name}: numbers typed into the prose that are neither glued nor listed as "
        f"constants in {Path(__file__).name}: "
        + "; ".join(f"{n!r} in '...{ctx.strip()}...'" for n, ctx in unknown.items())
    )


def test_the_scanner_sees_numbers_and_skips_glue(tmp_path):
    """Guard against a test that cannot fail."""
    nb = {"cells": [{"cell_type": "markdown", "source":
                     "PSNR rose by 1.23 dB, {glue:text}`gain:.2f` in fact; `fit(lr=0.5)`; "
                     "$K_1 = 0.01$."}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb))
    assert set(typed_numbers(path)) == {"1.23", "0.01"}
