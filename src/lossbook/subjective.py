r"""Two-alternative forced-choice (2AFC) studies: design, responses on disk, scaling.

A metric is only as good as its agreement with people. The standard ways to ask
people are rating scales (a mean opinion score, MOS, and its difference to the
reference, DMOS; ITU-R BT.500, ITU-T P.910) and *paired comparison*: show two versions
of an image side by side and ask which one looks better. Paired comparison needs no
training of the observer and no agreement on what "fair" or "good" means, and the
answers are scaled to an interval quality scale with a model of the observer:

- **Thurstone Case V** (Thurstone 1927): condition :math:`i` is perceived with
  quality :math:`q_i` plus Gaussian noise, so
  :math:`P(i \succ j) = \Phi(q_i - q_j)` in units of the standard deviation of the
  perceived difference;
- **Bradley-Terry** (Bradley & Terry 1952): :math:`P(i \succ j) = 1 / (1 + e^{-(q_i - q_j)})`,
  the same idea with a logistic instead of a Gaussian.

This module holds the pieces of such a study:

- :func:`design_2afc`: every pair of conditions once, left/right positions balanced,
  plus a few repeated pairs (sides swapped) to measure the observer's consistency;
- :class:`StudySession`: the responses, appended to a JSON-lines file as each one is
  given (a crash or a closed browser tab loses no answer; opening the same file again
  resumes), with a clear error and no overwrite when the file is corrupted;
- :func:`fit_scale`: the quality scale with confidence intervals, fitted by
  expectation propagation in the `choix` package (Thurstone: ``model="probit"``,
  Bradley-Terry: ``"logit"``);
- :func:`repeat_agreement`, :func:`circular_triads`, :func:`position_bias`: is the
  observer consistent, and does the side of the screen matter?
- :class:`SimulatedObserver`: preferences from a stated Thurstone model plus noise, for
  tests and for the static book. Everything it produces carries ``"simulated": True``,
  and :func:`source_label` turns that into the label that goes on every table and
  figure.

References
----------
L. L. Thurstone, "A law of comparative judgment", *Psychological Review* 34(4), 1927.
R. A. Bradley and M. E. Terry, "Rank analysis of incomplete block designs: I. The
method of paired comparisons", *Biometrika* 39(3/4), 1952.
M. G. Kendall and B. Babington Smith, "On the method of paired comparisons",
*Biometrika* 31(3/4), 1940 (circular triads).
ITU-R Recommendation BT.500; ITU-T Recommendation P.910.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as _sps

from . import stats as _stats

__all__ = [
    "Trial",
    "StudyDesign",
    "design_2afc",
    "ResponseFileError",
    "StudySession",
    "read_responses",
    "SimulatedObserver",
    "simulate_study",
    "win_matrix",
    "fit_scale",
    "repeat_agreement",
    "circular_triads",
    "position_bias",
    "metric_agreement",
    "source_label",
    "SIMULATED_LABEL",
]

FORMAT = "lossbook-2afc"
FORMAT_VERSION = 1
SIMULATED_LABEL = "simulated observer"
"""The label of everything a :class:`SimulatedObserver` produced."""

_CHOICES = ("left", "right")


# ------------------------------------------------------------------------ design


@dataclass(frozen=True)
class Trial:
    """One 2AFC trial: which condition is shown on the left and which on the right.

    ``repeat_of`` is the index of the trial this one repeats (with sides swapped), or
    ``None`` for a first showing.
    """

    index: int
    left: str
    right: str
    repeat_of: int | None = None

    @property
    def pair(self) -> frozenset[str]:
        """The two conditions, regardless of side."""
        return frozenset((self.left, self.right))


@dataclass(frozen=True)
class StudyDesign:
    """The conditions of a study and its trials in presentation order."""

    conditions: tuple[str, ...]
    trials: tuple[Trial, ...]
    seed: int | None = None
    name: str = "2afc"

    def to_dict(self) -> dict:
        """A JSON-able description (what the responses file starts with)."""
        return {
            "name": self.name,
            "conditions": list(self.conditions),
            "trials": [[t.left, t.right, t.repeat_of] for t in self.trials],
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> StudyDesign:
        """The inverse of :meth:`to_dict`."""
        trials = tuple(
            Trial(i, str(left), str(right), None if rep is None else int(rep))
            for i, (left, right, rep) in enumerate(d["trials"])
        )
        return cls(tuple(d["conditions"]), trials, d.get("seed"), d.get("name", "2afc"))

    @property
    def n_trials(self) -> int:
        """Number of trials, repeats included."""
        return len(self.trials)


def design_2afc(
    conditions: Sequence[str],
    *,
    n_repeats: int | None = None,
    seed: int = 0,
    name: str = "2afc",
) -> StudyDesign:
    r"""A complete paired-comparison design with balanced sides and repeated pairs.

    Every unordered pair of the :math:`n` conditions is shown once
    (:math:`n(n-1)/2` trials) in random order. Sides follow a circulant rule: for
    :math:`d = (j - i) \bmod n`, condition :math:`i` is on the left of pair
    :math:`(i, j)` when :math:`d < n/2`, so every condition is on the left in
    :math:`(n-1)/2` of its pairs for odd :math:`n` (within one for even :math:`n`);
    position bias then cancels out of the scale. Then ``n_repeats`` randomly chosen pairs
    are shown again at the end with sides swapped, to measure consistency
    (:func:`repeat_agreement`).

    Parameters
    ----------
    conditions : sequence of str
        Distinct condition names (at least 2), e.g. ``["blur", "jpeg", ...]``.
    n_repeats : int, optional
        Pairs shown twice. Default: 10 % of the pairs, at least 1 (and at most all).
    seed : int
        Seed of the presentation order and of the choice of repeated pairs.
    name : str
        A name stored with the responses.

    Returns
    -------
    StudyDesign
    """
    conds = [str(c) for c in conditions]
    if len(conds) < 2:
        raise ValueError(f"a 2AFC study needs at least 2 conditions; got {len(conds)}.")
    if len(set(conds)) != len(conds):
        dup = sorted({c for c in conds if conds.count(c) > 1})
        raise ValueError(f"condition names must be distinct; repeated: {dup}.")
    n = len(conds)
    pairs = []
    for i, j in itertools.combinations(range(n), 2):
        d = (j - i) % n
        left_is_i = d < n / 2 or (d == n / 2 and i % 2 == 0)
        pairs.append((conds[i], conds[j]) if left_is_i else (conds[j], conds[i]))
    n_pairs = len(pairs)
    if n_repeats is None:
        n_repeats = max(1, round(0.1 * n_pairs))
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, (int, np.integer)):
        raise TypeError(f"n_repeats must be an integer; got {type(n_repeats).__name__}.")
    if not 0 <= n_repeats <= n_pairs:
        raise ValueError(f"n_repeats must lie in [0, {n_pairs}] (the number of pairs); got "
                         f"{n_repeats}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_pairs)
    trials = [Trial(k, *pairs[p]) for k, p in enumerate(order)]
    for r in sorted(rng.choice(n_pairs, size=int(n_repeats), replace=False)):
        first = trials[int(r)]
        trials.append(Trial(len(trials), first.right, first.left, repeat_of=first.index))
    return StudyDesign(tuple(conds), tuple(trials), seed, name)


# ------------------------------------------------------------------------ responses on disk


class ResponseFileError(ValueError):
    """A responses file that cannot be read as a lossbook 2AFC study (never overwritten)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _append_line(path: Path, obj: dict) -> None:
    """Append one JSON line and push it to the disk before returning."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_responses(path: str | os.PathLike) -> tuple[StudyDesign, dict, list[dict]]:
    """Read a responses file: ``(design, header, responses)``.

    Raises
    ------
    ResponseFileError
        If the file is not a lossbook 2AFC responses file or a line is damaged; the
        message names the line. The file is left untouched.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    fix = (f"The file was left untouched. Inspect {path} (one JSON object per line); save "
           "the answers you want to keep under another name, or start a new study with a "
           "new file name.")
    if not lines:
        raise ResponseFileError(f"{path} is empty: it has no study header. {fix}")
    records = []
    for k, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ResponseFileError(
                f"{path}, line {k}: not valid JSON ({err.msg}); the line starts with "
                f"{line[:40]!r}. {fix}") from None
        if not isinstance(rec, dict):
            raise ResponseFileError(f"{path}, line {k}: expected a JSON object. {fix}")
        records.append(rec)
    header = records[0]
    if header.get("format") != FORMAT:
        raise ResponseFileError(
            f"{path}, line 1: not a {FORMAT} header (format={header.get('format')!r}). {fix}")
    try:
        design = StudyDesign.from_dict(header["design"])
    except (KeyError, TypeError, ValueError) as err:
        raise ResponseFileError(f"{path}, line 1: the study design is damaged ({err}). {fix}") \
            from None
    seen: set[int] = set()
    responses = []
    for k, rec in enumerate(records[1:], start=2):
        t = rec.get("trial")
        if (not isinstance(t, int) or not 0 <= t < design.n_trials
                or rec.get("choice") not in _CHOICES):
            raise ResponseFileError(
                f"{path}, line {k}: not a valid response (needs 'trial' in "
                f"0..{design.n_trials - 1} and 'choice' 'left' or 'right'; got {rec!r:.80}). "
                f"{fix}")
        trial = design.trials[t]
        if rec.get("left") != trial.left or rec.get("right") != trial.right:
            raise ResponseFileError(
                f"{path}, line {k}: trial {t} shows {trial.left!r} | {trial.right!r} in the "
                f"design, but the line says {rec.get('left')!r} | {rec.get('right')!r}. {fix}")
        if t in seen:
            raise ResponseFileError(f"{path}, line {k}: trial {t} is answered twice. {fix}")
        seen.add(t)
        responses.append(rec)
    return design, header, responses


class StudySession:
    """A 2AFC study whose answers are on disk as soon as they are given.

    The file is JSON lines: a header (the design, the observer, whether the observer is
    simulated), then one line per answer, appended and flushed to the disk (``fsync``)
    before :meth:`record` returns. Opening an existing file resumes the study at its
    first unanswered trial. A file that cannot be read raises
    :class:`ResponseFileError` and is never overwritten.

    Parameters
    ----------
    path : path
        The responses file (``.jsonl``); created with its directory if missing.
    design : StudyDesign, optional
        Required for a new file. For an existing file it must equal the stored design
        (otherwise the file belongs to another study: choose another name).
    observer : str
        Who answers (stored in every line).
    simulated : bool
        True when a :class:`SimulatedObserver` answers; stored in the header and every line.
    """

    def __init__(self, path: str | os.PathLike, design: StudyDesign | None = None, *,
                 observer: str = "anonymous", simulated: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists():
            stored, header, responses = read_responses(self.path)
            if design is not None and design.to_dict() != stored.to_dict():
                raise ValueError(
                    f"{self.path} holds a different study (its conditions or trials differ "
                    "from the design given); pass another path to start this one, or pass "
                    "design=None to resume the stored study.")
            self.design, self.header, self.responses = stored, header, responses
        else:
            if design is None:
                raise ValueError(f"{self.path} does not exist; pass a design to start a study.")
            self.design = design
            self.header = {"format": FORMAT, "version": FORMAT_VERSION, "created": _now(),
                           "observer": str(observer), "simulated": bool(simulated),
                           "design": design.to_dict()}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.header) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
            self.responses = []
        self.observer = str(observer)
        self.simulated = bool(self.header.get("simulated", False)) or bool(simulated)

    @property
    def answered(self) -> set[int]:
        """Indices of the answered trials."""
        return {r["trial"] for r in self.responses}

    @property
    def n_answered(self) -> int:
        """Number of answers given."""
        return len(self.responses)

    @property
    def done(self) -> bool:
        """True when every trial has an answer."""
        return self.n_answered >= self.design.n_trials

    def next_trial(self) -> Trial | None:
        """The first unanswered trial in presentation order (``None`` when done)."""
        answered = self.answered
        for t in self.design.trials:
            if t.index not in answered:
                return t
        return None

    def record(self, choice: str, *, trial: Trial | int | None = None,
               response_time_s: float | None = None) -> dict:
        """Store the answer ``"left"`` or ``"right"`` to ``trial`` (default: the next one).

        The line is on disk before this returns. Returns the stored record.
        """
        if choice not in _CHOICES:
            raise ValueError(f"choice must be 'left' or 'right'; got {choice!r}.")
        if trial is None:
            trial = self.next_trial()
            if trial is None:
                raise ValueError("the study is complete: every trial has an answer.")
        idx = trial.index if isinstance(trial, Trial) else int(trial)
        if not 0 <= idx < self.design.n_trials:
            raise ValueError(f"trial must lie in 0..{self.design.n_trials - 1}; got {idx}.")
        if idx in self.answered:
            raise ValueError(f"trial {idx} already has an answer; answers are never replaced.")
        t = self.design.trials[idx]
        winner, loser = (t.left, t.right) if choice == "left" else (t.right, t.left)
        rec = {"trial": idx, "left": t.left, "right": t.right, "choice": choice,
               "winner": winner, "loser": loser, "repeat_of": t.repeat_of,
               "observer": self.observer, "simulated": self.simulated, "time": _now(),
               "response_time_s": None if response_time_s is None else float(response_time_s)}
        _append_line(self.path, rec)
        self.responses.append(rec)
        return rec


# ------------------------------------------------------------------------ simulated observer


@dataclass
class SimulatedObserver:
    r"""An observer who answers by a stated Thurstone Case V model plus noise.

    For a trial with ``left`` :math:`a` and ``right`` :math:`b`:

    .. math:: P(\text{left}) = \lambda/2 + (1 - \lambda)\,
              \Phi\!\left(\frac{q_a - q_b + \beta}{\sigma}\right)

    with :math:`q` the stated ``quality`` of each condition, :math:`\sigma` the ``noise``
    (standard deviation of the perceived difference), :math:`\beta` a ``left_bias`` and
    :math:`\lambda` a ``lapse`` rate (answers at random). A Thurstone scale fitted to
    its answers estimates :math:`q / \sigma` (up to a shift).

    Everything it produces is labelled :data:`SIMULATED_LABEL`; its agreement with any
    metric says only how close that metric is to the stated ``quality``.
    """

    quality: Mapping[str, float]
    noise: float = 1.0
    lapse: float = 0.0
    left_bias: float = 0.0
    seed: int | None = 0
    name: str = SIMULATED_LABEL
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.noise > 0:
            raise ValueError(f"noise must be positive; got {self.noise}.")
        if not 0 <= self.lapse <= 1:
            raise ValueError(f"lapse must lie in [0, 1]; got {self.lapse}.")
        self._rng = np.random.default_rng(self.seed)

    def prob_left(self, trial: Trial) -> float:
        """The model's probability of answering ``"left"``."""
        missing = [c for c in (trial.left, trial.right) if c not in self.quality]
        if missing:
            raise KeyError(f"the observer has no stated quality for {missing}.")
        z = (self.quality[trial.left] - self.quality[trial.right] + self.left_bias) / self.noise
        return float(self.lapse / 2 + (1 - self.lapse) * _sps.norm.cdf(z))

    def choose(self, trial: Trial) -> str:
        """Draw an answer, ``"left"`` or ``"right"``."""
        return "left" if self._rng.random() < self.prob_left(trial) else "right"


def simulate_study(design: StudyDesign, observer: SimulatedObserver,
                   path: str | os.PathLike | None = None) -> list[dict]:
    """Let a simulated observer answer every (remaining) trial of ``design``.

    With ``path`` the answers go to that responses file as in a real session (resuming
    it if it exists); without, they stay in memory. Every record has
    ``"simulated": True``.
    """
    if path is not None:
        session = StudySession(path, design, observer=observer.name, simulated=True)
        while (t := session.next_trial()) is not None:
            session.record(observer.choose(t), trial=t)
        return session.responses
    out = []
    for t in design.trials:
        choice = observer.choose(t)
        winner, loser = (t.left, t.right) if choice == "left" else (t.right, t.left)
        out.append({"trial": t.index, "left": t.left, "right": t.right, "choice": choice,
                    "winner": winner, "loser": loser, "repeat_of": t.repeat_of,
                    "observer": observer.name, "simulated": True, "time": None,
                    "response_time_s": None})
    return out


def source_label(responses: Sequence[Mapping]) -> str:
    """``"simulated observer"`` if any response is simulated, else ``"human observers"``
    (the label for tables and figures)."""
    if any(r.get("simulated", False) for r in responses):
        return SIMULATED_LABEL
    return "human observers"


# ------------------------------------------------------------------------ analysis


def _index(conditions: Sequence[str]) -> dict[str, int]:
    return {c: i for i, c in enumerate(conditions)}


def _pairs(responses: Sequence[Mapping], conditions: Sequence[str]) -> list[tuple[int, int]]:
    idx = _index(conditions)
    out = []
    for r in responses:
        try:
            out.append((idx[r["winner"]], idx[r["loser"]]))
        except KeyError as err:
            raise ValueError(
                f"a response names condition {err.args[0]!r}, which is not among the "
                f"conditions {list(conditions)}.") from None
    return out


def win_matrix(responses: Sequence[Mapping], conditions: Sequence[str]) -> np.ndarray:
    """``W[i, j]``: how often condition ``i`` was preferred to condition ``j``."""
    n = len(conditions)
    w = np.zeros((n, n), dtype=int)
    for a, b in _pairs(responses, conditions):
        w[a, b] += 1
    return w


def fit_scale(
    responses: Sequence[Mapping],
    conditions: Sequence[str],
    *,
    model: str = "thurstone",
    confidence: float = 0.95,
    alpha: float = 0.01,
    anchor: str | None = None,
) -> dict[str, Any]:
    r"""Scale paired-comparison answers to a quality scale with confidence intervals.

    The model (Thurstone Case V, :math:`P(i \succ j) = \Phi(q_i - q_j)`, or
    Bradley-Terry, :math:`P(i \succ j) = \sigma(q_i - q_j)` with :math:`\sigma` the
    logistic function) is fitted by expectation propagation with
    :func:`choix.ep_pairwise`, under a weak Gaussian prior :math:`q \sim
    \mathcal N(0, \alpha^{-1} I)` that keeps the scale finite when one condition wins
    every comparison. The result is an approximately Gaussian posterior; the scale is
    shifted so that its mean (or the ``anchor`` condition) is 0, and the interval of
    each condition is :math:`\hat q_i \pm z_{(1+c)/2}\,\mathrm{sd}_i` from the
    covariance of the shifted scale.

    A condition that wins (or loses) every one of its comparisons has no finite
    maximum-likelihood value: only the prior bounds it, and its interval is wide. Pairs
    that differ by more than about two scale units need many observers to be placed.

    Parameters
    ----------
    responses : sequence of dict
        Records with ``"winner"`` and ``"loser"`` (from :class:`StudySession`,
        :func:`simulate_study` or several of them concatenated).
    conditions : sequence of str
        All condition names, in the order of the output.
    model : {"thurstone", "bradley-terry"}
        Observer model. Default ``"thurstone"``.
    confidence : float
        Coverage of the intervals. Default 0.95.
    alpha : float
        Precision of the prior (default 0.01: a prior standard deviation of 10 scale
        units, far wider than any scale of a few conditions).
    anchor : str, optional
        A condition fixed at 0 (e.g. the undistorted reference); default: mean 0.

    Returns
    -------
    dict
        ``conditions``, ``scale``, ``low``, ``high``, ``sd`` (arrays in the order of
        ``conditions``), ``cov`` (covariance of the shifted scale), ``model``, ``unit``,
        ``confidence``, ``n_responses``, ``simulated``, ``label`` (:func:`source_label`).
    """
    import choix

    key = model.lower().replace("_", "-").replace(" ", "-")
    models = {"thurstone": "probit", "thurstone-case-v": "probit", "bradley-terry": "logit",
              "bt": "logit"}
    if key not in models:
        raise ValueError(f"model must be 'thurstone' or 'bradley-terry'; got {model!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}.")
    if not alpha > 0:
        raise ValueError(f"alpha (the prior precision) must be positive; got {alpha}.")
    conds = [str(c) for c in conditions]
    data = _pairs(responses, conds)
    if not data:
        raise ValueError("no responses to scale; answer some trials first.")
    n = len(conds)
    mean, cov = choix.ep_pairwise(n, data, alpha, model=models[key])
    shift = np.eye(n) - (np.ones((n, n)) / n if anchor is None else 0.0)
    if anchor is not None:
        if anchor not in conds:
            raise ValueError(f"anchor {anchor!r} is not one of the conditions {conds}.")
        shift[:, conds.index(anchor)] -= 1.0
    scale = shift @ mean
    cov_s = shift @ cov @ shift.T
    sd = np.sqrt(np.clip(np.diag(cov_s), 0, None))
    z = float(_sps.norm.ppf((1 + confidence) / 2))
    unit = ("standard deviations of the perceived difference (Thurstone Case V)"
            if models[key] == "probit" else "log-odds of preference (Bradley-Terry)")
    return {
        "conditions": conds,
        "scale": scale,
        "low": scale - z * sd,
        "high": scale + z * sd,
        "sd": sd,
        "cov": cov_s,
        "model": "Thurstone Case V" if models[key] == "probit" else "Bradley-Terry",
        "unit": unit,
        "confidence": float(confidence),
        "n_responses": len(data),
        "simulated": any(r.get("simulated", False) for r in responses),
        "label": source_label(responses),
    }


def repeat_agreement(responses: Sequence[Mapping]) -> dict[str, Any]:
    """How often a repeated pair got the same *condition* chosen both times.

    Repeats are shown with sides swapped, so an observer who always presses "left"
    agrees 0 times. A consistent observer agrees on pairs that differ visibly and is
    at chance (50 %) on pairs that look alike.

    Returns
    -------
    dict
        ``agree``, ``n`` (repeated pairs with both answers), ``rate`` (NaN when ``n``
        is 0).
    """
    by_trial = {r["trial"]: r for r in responses}
    agree = n = 0
    for r in responses:
        first = r.get("repeat_of")
        if first is None or first not in by_trial:
            continue
        n += 1
        agree += by_trial[first]["winner"] == r["winner"]
    return {"agree": agree, "n": n, "rate": agree / n if n else float("nan")}


def circular_triads(responses: Sequence[Mapping], conditions: Sequence[str]) -> dict[str, Any]:
    r"""Circular triads (:math:`a \succ b \succ c \succ a`) of one observer's answers.

    Each pair counts once: its majority answer (first showings and repeats together;
    a tied pair is left out, and so is every triad it belongs to). A triad of three
    judged pairs is circular when the preferences go round. Kendall and Babington
    Smith (1940) bound their number by
    :math:`d_{\max} = (n^3 - n)/24` for odd :math:`n` and :math:`(n^3 - 4n)/24` for even
    :math:`n`; the coefficient of consistency is :math:`\zeta = 1 - d/d_{\max}`
    (1: perfectly transitive). For a complete design with one answer per pair,
    :math:`d = \frac{n(n-1)(2n-1)}{12} - \frac12 \sum_i a_i^2` with :math:`a_i` the
    wins of condition :math:`i`.

    Pool the answers of several observers and you measure their disagreement, not
    anyone's inconsistency: call this per observer.

    Returns
    -------
    dict
        ``triads`` (:math:`d`), ``max`` (:math:`d_{\max}`), ``zeta``, ``n_triads_judged``
        (triads with all three pairs decided).
    """
    n = len(conditions)
    w = win_matrix(responses, conditions)
    decided = (w + w.T > 0) & (w != w.T)
    dom = w > w.T
    d = judged = 0
    for i, j, k in itertools.combinations(range(n), 3):
        if not (decided[i, j] and decided[j, k] and decided[i, k]):
            continue
        judged += 1
        if (dom[i, j] and dom[j, k] and dom[k, i]) or (dom[j, i] and dom[k, j] and dom[i, k]):
            d += 1
    d_max = (n**3 - n) / 24 if n % 2 else (n**3 - 4 * n) / 24
    return {"triads": d, "max": d_max, "zeta": 1 - d / d_max if d_max else float("nan"),
            "n_triads_judged": judged}


def position_bias(responses: Sequence[Mapping]) -> dict[str, Any]:
    """Share of "left" answers, with a two-sided exact binomial test against 1/2.

    Returns
    -------
    dict
        ``left_share``, ``n``, ``p_value`` (:func:`scipy.stats.binomtest`).
    """
    n = len(responses)
    if n == 0:
        return {"left_share": float("nan"), "n": 0, "p_value": float("nan")}
    k = sum(r["choice"] == "left" for r in responses)
    return {"left_share": k / n, "n": n, "p_value": float(_sps.binomtest(k, n, 0.5).pvalue)}


def metric_agreement(fit: Mapping, metrics: Mapping[str, Mapping[str, float]], *,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Spearman's and Kendall's rank correlation of each metric with a fitted scale.

    Parameters
    ----------
    fit : dict
        A result of :func:`fit_scale`.
    metrics : dict
        ``{metric name: {condition: value}}``, one value per condition of ``fit``.
        Orient each metric so that higher is better (pass ``-MAE``), or read a negative
        correlation as agreement.
    confidence, seed
        Passed to :func:`lossbook.stats.spearman` and :func:`lossbook.stats.kendall`
        (bootstrap intervals over the conditions).

    Returns
    -------
    dict
        ``{metric: (spearman result, kendall result)}``; ``(None, None)`` for a metric
        that is constant over the conditions (it ranks nothing).
    """
    scale = np.asarray(fit["scale"], dtype=float)
    out: dict[str, Any] = {}
    for name, values in metrics.items():
        missing = [c for c in fit["conditions"] if c not in values]
        if missing:
            raise ValueError(f"metric {name!r} has no value for the conditions {missing}.")
        x = np.array([values[c] for c in fit["conditions"]], dtype=float)
        if np.ptp(x) == 0:
            out[name] = (None, None)
            continue
        out[name] = (_stats.spearman(x, scale, confidence=confidence, seed=seed),
                     _stats.kendall(x, scale, confidence=confidence, seed=seed))
    return out
