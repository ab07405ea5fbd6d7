"""Chapter 12's exercise checks: the package's answers pass, typical wrong answers are
rejected with the helpful message, and constants or echoes cannot pass."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lossbook import diagnose as D
from lossbook.exercises import ch12


def test_reference_names_every_generated_case():
    """The package's classifier is right on 50 fresh cases (10 per symptom)."""
    wrong = Counter()
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        for s in ch12.SYMPTOMS:
            pred, target = ch12.make_symptom_case(s, g)
            if ch12.reference_symptom(pred, target) != s:
                wrong[s] += 1
    assert not wrong


def test_check_symptom_accepts_the_reference():
    assert "named correctly" in ch12.check_symptom(ch12.reference_symptom, seed=3)


def _noise_before_checkerboard(pred, target):
    if D.noise(pred, target).flagged:
        return "noise"
    return ch12.reference_symptom(pred, target)


def _any_ratio_below_one(pred, target):
    if D.checkerboard(pred, target).flagged:
        return "checkerboard"
    return "blur" if D.blur(pred, target).value < 0.999 else ch12.reference_symptom(pred, target)


@pytest.mark.parametrize(("wrong", "message"), [
    (_noise_before_checkerboard, "spectral peak"),
    (lambda p, t: "blur", "you said 'blur'"),
    (lambda p, t: "none", "you said 'none'"),
    (lambda p, t: p, "answer one of"),
])
def test_check_symptom_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        ch12.check_symptom(wrong, seed=5)


def test_any_ratio_below_one_is_caught_on_some_seed():
    """Calling every ratio under 1 blur fails on clean images whose ratio is 0.99x."""
    messages = []
    for seed in range(6):
        try:
            ch12.check_symptom(_any_ratio_below_one, seed=seed)
        except AssertionError as err:
            messages.append(str(err))
    assert messages, "the sloppy threshold was never caught"


def _balanced(norms):
    inv = [1 / g for g in norms]
    return [v / sum(inv) for v in inv]


def test_check_balanced_weights():
    assert "passed" in ch12.check_balanced_weights(_balanced)
    with pytest.raises(AssertionError, match="inverse of each norm"):
        ch12.check_balanced_weights(lambda n: [g / sum(n) for g in n])
    with pytest.raises(AssertionError, match="normalise them to sum to 1"):
        ch12.check_balanced_weights(lambda n: [1 / g for g in n])
    with pytest.raises(AssertionError, match="expected weights"):
        ch12.check_balanced_weights(lambda n: [1 / len(n)] * len(n))
    with pytest.raises(AssertionError, match="one weight per term"):
        ch12.check_balanced_weights(lambda n: 0.5)


def test_cases_are_fresh():
    a = ch12.make_symptom_case("blur", torch.Generator().manual_seed(1))[1]
    b = ch12.make_symptom_case("blur", torch.Generator().manual_seed(2))[1]
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="symptom must be one of"):
        ch12.make_symptom_case("ringing", torch.Generator())
