"""Tests for lossbook.exercises.ch08: the package's answers pass, typical wrong answers
are rejected with the helpful message, constants and echoes cannot pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbook.exercises import check_discriminator_loss, check_gram_matrix
from lossbook.losses import discriminator_loss, gram_matrix


def test_gram_answer_passes_and_mistakes_are_named():
    assert "passed" in check_gram_matrix(gram_matrix)

    def unnormalised(f):
        n, c, h, w = f.shape
        x = f.reshape(n, c, h * w)
        return x @ x.transpose(1, 2)

    def only_hw(f):
        return unnormalised(f) / (f.shape[2] * f.shape[3])

    def transposed(f):
        n, c, h, w = f.shape
        x = f.reshape(n, c, h * w)
        return x.transpose(1, 2) @ x / (c * h * w)

    for wrong, msg in ((unnormalised, "divide by C \\* H \\* W"),
                       (only_hw, "divide by C as well"),
                       (transposed, "F\\^T F")):
        with pytest.raises(AssertionError, match=msg):
            check_gram_matrix(wrong, seed=3)
    with pytest.raises(AssertionError):
        check_gram_matrix(lambda f: torch.zeros(f.shape[0], f.shape[1], f.shape[1]))
    with pytest.raises(AssertionError):
        check_gram_matrix(lambda f: f)


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge", "lsgan"])
def test_discriminator_answer_passes(kind):
    assert "passed" in check_discriminator_loss(
        lambda r, f: discriminator_loss(r, f, kind=kind), kind)


def test_discriminator_mistakes_are_named():
    def swapped(r, f):
        return F.softplus(r).mean() + F.softplus(-f).mean()

    def summed(r, f):
        return F.softplus(-r).sum() + F.softplus(f).sum()

    def sigmoid_first(r, f):
        return (F.binary_cross_entropy_with_logits(torch.sigmoid(r), torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(torch.sigmoid(f), torch.zeros_like(f)))

    for wrong, msg in ((swapped, "swapped"), (summed, "mean"), (sigmoid_first, "sigmoid")):
        with pytest.raises(AssertionError, match=msg):
            check_discriminator_loss(wrong, seed=5)
    with pytest.raises(AssertionError):
        check_discriminator_loss(lambda r, f: torch.tensor(0.7))
    with pytest.raises(AssertionError):
        check_discriminator_loss(lambda r, f: r.mean(), "hinge")
    with pytest.raises(ValueError, match="kind"):
        check_discriminator_loss(lambda r, f: r.mean(), "wgan")
