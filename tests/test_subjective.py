"""lossbook.subjective: 2AFC design, responses on disk (resume, corruption), scaling."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats as sps

from lossbook import subjective as S

CONDS = ["a", "b", "c", "d", "e"]


def _dicts(trials):
    return [{"trial": t.index, "left": t.left, "right": t.right, "repeat_of": t.repeat_of}
            for t in trials]


# ---------------------------------------------------------------- design


@pytest.mark.parametrize("n", [2, 3, 5, 6, 9])
def test_design_every_pair_once_with_balanced_sides(n):
    conds = [f"c{i}" for i in range(n)]
    d = S.design_2afc(conds, n_repeats=0, seed=1)
    assert d.n_trials == n * (n - 1) // 2
    assert {t.pair for t in d.trials} == {frozenset(p) for p in itertools.combinations(conds, 2)}
    left = Counter(t.left for t in d.trials)
    counts = [left.get(c, 0) for c in conds]
    if n % 2:
        assert counts == [(n - 1) // 2] * n
    else:
        assert max(counts) - min(counts) <= 1


def test_design_repeats_swap_sides_and_come_after_their_original():
    d = S.design_2afc(CONDS, n_repeats=3, seed=2)
    assert d.n_trials == 10 + 3
    reps = [t for t in d.trials if t.repeat_of is not None]
    assert len(reps) == 3 and len({t.repeat_of for t in reps}) == 3
    for t in reps:
        first = d.trials[t.repeat_of]
        assert first.repeat_of is None and t.index > first.index
        assert (t.left, t.right) == (first.right, first.left)
    assert S.design_2afc(CONDS, seed=2) == S.design_2afc(CONDS, seed=2)
    assert S.design_2afc(CONDS, seed=2).trials != S.design_2afc(CONDS, seed=3).trials
    assert S.design_2afc(CONDS).n_trials == 11  # default: 10 % of the pairs, at least 1
    assert S.StudyDesign.from_dict(d.to_dict()) == d


def test_design_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        S.design_2afc(["a"])
    with pytest.raises(ValueError, match="distinct"):
        S.design_2afc(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        S.design_2afc(["a", "b", "c"], n_repeats=4)


# ---------------------------------------------------------------- responses on disk


def test_session_appends_each_answer_and_resumes(tmp_path):
    path = tmp_path / "sub" / "responses.jsonl"
    d = S.design_2afc(CONDS, seed=0)
    s = S.StudySession(path, d, observer="me")
    assert path.read_text().count("\n") == 1  # the header only
    s.record("left", response_time_s=1.5)
    s.record("right")
    assert path.read_text().count("\n") == 3
    t2 = s.next_trial()
    assert t2.index == 2

    again = S.StudySession(path)  # resume without the design ...
    assert again.n_answered == 2 and again.next_trial() == t2
    again = S.StudySession(path, d)  # ... or with the same design
    rec = again.record("left")
    assert rec["trial"] == 2 and rec["winner"] == t2.left and rec["loser"] == t2.right
    assert rec["observer"] == "me" or rec["observer"] == "anonymous"
    design, header, responses = S.read_responses(path)
    assert design == d and header["simulated"] is False
    assert [r["choice"] for r in responses] == ["left", "right", "left"]
    assert responses[0]["response_time_s"] == 1.5


def test_a_killed_study_loses_no_answer(tmp_path):
    # A separate process answers 4 trials and is then killed (SIGKILL: no cleanup, no
    # flushing at exit). Every answer must be on disk, and the study resumes at trial 4.
    path = tmp_path / "r.jsonl"
    code = (
        "import os, signal\n"
        "from lossbook import subjective as S\n"
        f"s = S.StudySession({str(path)!r}, S.design_2afc({CONDS!r}, seed=0))\n"
        "for c in ['left', 'right', 'right', 'left']:\n"
        "    s.record(c)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    s = S.StudySession(path, S.design_2afc(CONDS, seed=0))
    assert [r["choice"] for r in s.responses] == ["left", "right", "right", "left"]
    assert s.next_trial().index == 4


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda text: text + '{"trial": 3, "choi', "line 4: not valid JSON"),
        (lambda text: text.replace('"choice": "left"', '"choice": "up"', 1), "line 2"),
        (lambda text: text + text.splitlines()[1] + "\n", "answered twice"),
        (lambda text: "hello\n" + text, "line 1: not valid JSON"),
        (lambda text: "", "empty"),
        (lambda text: '{"format": "other"}\n', "not a lossbook-2afc header"),
    ],
)
def test_a_corrupted_file_gives_a_clear_error_and_is_not_overwritten(tmp_path, damage, match):
    path = tmp_path / "r.jsonl"
    d = S.design_2afc(CONDS, seed=0)
    s = S.StudySession(path, d)
    s.record("left")
    s.record("right")
    path.write_text(damage(path.read_text()))
    before = path.read_bytes()
    with pytest.raises(S.ResponseFileError, match=match) as info:
        S.StudySession(path, d)
    assert "left untouched" in str(info.value)
    with pytest.raises(S.ResponseFileError):
        S.read_responses(path)
    assert path.read_bytes() == before
    assert isinstance(info.value, ValueError)


def test_session_refuses_another_study_and_bad_answers(tmp_path):
    path = tmp_path / "r.jsonl"
    d = S.design_2afc(CONDS, n_repeats=0, seed=0)
    s = S.StudySession(path, d)
    with pytest.raises(ValueError, match="different study"):
        S.StudySession(path, S.design_2afc(CONDS, n_repeats=0, seed=1))
    with pytest.raises(ValueError, match="does not exist"):
        S.StudySession(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="'left' or 'right'"):
        s.record("L")
    s.record("left", trial=5)
    with pytest.raises(ValueError, match="already has an answer"):
        s.record("right", trial=5)
    for _ in range(d.n_trials - 1):
        s.record("right")
    assert s.done and s.next_trial() is None
    with pytest.raises(ValueError, match="complete"):
        s.record("left")


# ---------------------------------------------------------------- simulated observer


def test_simulated_observer_probability_closed_form():
    q = {"a": 1.0, "b": 0.0}
    t = S.Trial(0, "a", "b")
    assert S.SimulatedObserver(q, noise=0.5).prob_left(t) == pytest.approx(sps.norm.cdf(2.0))
    lapsed = S.SimulatedObserver(q, noise=0.5, lapse=0.2).prob_left(t)
    assert lapsed == pytest.approx(0.1 + 0.8 * sps.norm.cdf(2.0))
    biased = S.SimulatedObserver({"a": 0.0, "b": 0.0}, left_bias=0.3).prob_left(t)
    assert biased == pytest.approx(sps.norm.cdf(0.3))
    # Monte Carlo: 4000 draws within 4 binomial standard deviations
    obs = S.SimulatedObserver(q, noise=1.0, seed=0)
    p = obs.prob_left(t)
    share = np.mean([obs.choose(t) == "left" for _ in range(4000)])
    assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / 4000)
    with pytest.raises(KeyError, match="no stated quality"):
        obs.prob_left(S.Trial(0, "a", "z"))
    with pytest.raises(ValueError, match="noise"):
        S.SimulatedObserver(q, noise=0.0)


def test_simulated_answers_are_labelled_everywhere(tmp_path):
    d = S.design_2afc(CONDS, seed=0)
    obs = S.SimulatedObserver(dict(zip(CONDS, [2.0, 1.0, 0.5, 0.0, -1.0])), seed=1)
    path = tmp_path / "sim.jsonl"
    responses = S.simulate_study(d, obs, path)
    assert len(responses) == d.n_trials
    _, header, stored = S.read_responses(path)
    assert header["simulated"] is True and header["observer"] == S.SIMULATED_LABEL
    assert all(r["simulated"] for r in stored)
    assert S.source_label(stored) == "simulated observer"
    assert S.fit_scale(stored, CONDS)["label"] == "simulated observer"
    assert S.fit_scale(stored, CONDS)["simulated"] is True
    in_memory = S.simulate_study(d, obs)
    assert all(r["simulated"] for r in in_memory)
    human = [{**r, "simulated": False} for r in stored]
    assert S.source_label(human) == "human observers"


# ---------------------------------------------------------------- scaling


def _two_items(k, n):
    return [{"winner": "x", "loser": "y"}] * k + [{"winner": "y", "loser": "x"}] * (n - k)


@pytest.mark.parametrize(("k", "n"), [(150, 200), (70, 100), (50, 100)])
def test_fit_scale_two_conditions_closed_form(k, n):
    # With two conditions the maximum-likelihood scale difference is Phi^-1(k/n)
    # (Thurstone) or log(k / (n - k)) (Bradley-Terry); a weak prior moves it by ~1 %.
    p = k / n
    th = S.fit_scale(_two_items(k, n), ["x", "y"], model="thurstone")
    bt = S.fit_scale(_two_items(k, n), ["x", "y"], model="bradley-terry")
    assert th["scale"][0] - th["scale"][1] == pytest.approx(sps.norm.ppf(p), abs=0.02)
    assert bt["scale"][0] - bt["scale"][1] == pytest.approx(np.log(p / (1 - p)), abs=0.02)
    assert th["scale"].sum() == pytest.approx(0.0, abs=1e-12)
    # sd of the BT difference: the inverse Fisher information, 1 / sqrt(n p (1 - p))
    sd_diff = np.sqrt(bt["cov"][0, 0] + bt["cov"][1, 1] - 2 * bt["cov"][0, 1])
    assert sd_diff == pytest.approx(1 / np.sqrt(n * p * (1 - p)), rel=0.05)
    assert th["low"][0] < th["scale"][0] < th["high"][0]


def test_fit_scale_matches_choix_maximum_likelihood():
    import choix

    rng = np.random.default_rng(0)
    conds = [f"c{i}" for i in range(6)]
    q = np.linspace(-1.0, 1.0, 6)
    responses = []
    for _ in range(60):
        for i, j in itertools.combinations(range(6), 2):
            win = rng.random() < 1 / (1 + np.exp(-(q[i] - q[j])))
            a, b = (i, j) if win else (j, i)
            responses.append({"winner": conds[a], "loser": conds[b]})
    ours = S.fit_scale(responses, conds, model="bradley-terry")
    mle = choix.opt_pairwise(6, [(conds.index(r["winner"]), conds.index(r["loser"]))
                                 for r in responses])
    assert np.allclose(ours["scale"], mle - mle.mean(), atol=0.02)


def test_fit_scale_recovers_the_simulated_observer_at_nominal_coverage():
    # Thurstone scale of a Thurstone observer: estimates q / noise (up to a shift).
    # Differences stay below ~1.5 noise units, so that no condition wins every one of
    # its comparisons (then only the prior would bound its scale value).
    q = dict(zip(CONDS, [0.4, 0.24, 0.0, -0.16, -0.48]))
    truth = np.array(list(q.values())) / 0.8
    truth -= truth.mean()
    d = S.design_2afc(CONDS, n_repeats=0, seed=0)
    hits = total = 0
    estimates = []
    for seed in range(25):
        obs = S.SimulatedObserver(q, noise=0.8, seed=seed)
        responses = [r for _ in range(10) for r in S.simulate_study(d, obs)]
        fit = S.fit_scale(responses, CONDS, model="thurstone")
        hits += int(np.sum((fit["low"] <= truth) & (truth <= fit["high"])))
        total += truth.size
        estimates.append(fit["scale"])
    assert 0.88 <= hits / total <= 0.995, hits / total
    # unbiased to within the Monte-Carlo error (sd of a scale value ~0.2, 25 studies)
    assert np.allclose(np.mean(estimates, axis=0), truth, atol=0.12)


def test_fit_scale_anchor_and_errors():
    r = [{"winner": "x", "loser": "y"}] * 3 + [{"winner": "y", "loser": "z"}] * 3
    fit = S.fit_scale(r, ["x", "y", "z"], anchor="z")
    assert fit["scale"][2] == 0.0 and fit["scale"][0] > fit["scale"][1] > 0
    assert fit["sd"][2] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="model"):
        S.fit_scale(r, ["x", "y", "z"], model="elo")
    with pytest.raises(ValueError, match="not among the conditions"):
        S.fit_scale(r, ["x", "y"])
    with pytest.raises(ValueError, match="no responses"):
        S.fit_scale([], ["x", "y"])


# ---------------------------------------------------------------- consistency


def test_repeat_agreement_consistent_and_side_bound_observers():
    d = S.design_2afc(CONDS, n_repeats=4, seed=0)
    sharp = S.SimulatedObserver(dict(zip(CONDS, [40.0, 30.0, 20.0, 10.0, 0.0])), seed=0)
    assert S.repeat_agreement(S.simulate_study(d, sharp)) == {"agree": 4, "n": 4, "rate": 1.0}
    always_left = S.SimulatedObserver(dict.fromkeys(CONDS, 0.0), left_bias=50.0, seed=0)
    assert S.repeat_agreement(S.simulate_study(d, always_left))["rate"] == 0.0
    assert np.isnan(S.repeat_agreement([])["rate"])


def _tournament(dom):
    n = dom.shape[0]
    return [{"winner": f"c{i}", "loser": f"c{j}"} for i in range(n) for j in range(n)
            if dom[i, j]]


@pytest.mark.parametrize("n", [4, 5, 7, 8])
def test_circular_triads_match_kendall_closed_form(n):
    conds = [f"c{i}" for i in range(n)]
    rng = np.random.default_rng(n)
    for _ in range(20):
        upper = np.triu(rng.random((n, n)) < 0.5, 1)
        dom = upper | np.triu(~upper, 1).T
        wins = dom.sum(axis=1)
        expected = n * (n - 1) * (2 * n - 1) / 12 - 0.5 * np.sum(wins**2)
        got = S.circular_triads(_tournament(dom), conds)
        assert got["triads"] == expected
        assert got["n_triads_judged"] == n * (n - 1) * (n - 2) // 6
    transitive = np.triu(np.ones((n, n), dtype=bool), 1)
    assert S.circular_triads(_tournament(transitive), conds)["zeta"] == 1.0
    if n % 2:  # the regular (circulant) tournament reaches the maximum
        regular = np.array([[0 < (j - i) % n <= n // 2 for j in range(n)] for i in range(n)])
        res = S.circular_triads(_tournament(regular), conds)
        assert res["triads"] == res["max"] == (n**3 - n) / 24 and res["zeta"] == 0.0


def test_position_bias_matches_binomial_test():
    d = S.design_2afc(CONDS, n_repeats=0, seed=0)
    obs = S.SimulatedObserver(dict.fromkeys(CONDS, 0.0), left_bias=1.0, seed=0)
    responses = [r for _ in range(5) for r in S.simulate_study(d, obs)]
    res = S.position_bias(responses)
    k = sum(r["choice"] == "left" for r in responses)
    assert res["left_share"] == k / 50 and res["n"] == 50
    assert res["p_value"] == pytest.approx(sps.binomtest(k, 50, 0.5).pvalue)
    assert res["left_share"] > 0.65 and res["p_value"] < 0.05


def test_metric_agreement_matches_scipy_and_flags_constant_metrics():
    fit = {"conditions": ["a", "b", "c", "d"], "scale": np.array([1.0, 0.5, -0.2, -1.3])}
    metrics = {"good": {"a": 4.0, "b": 3.0, "c": 2.5, "d": 1.0},
               "mixed": {"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.0},
               "flat": dict.fromkeys("abcd", 30.0)}
    res = S.metric_agreement(fit, metrics, seed=0)
    assert res["good"][0]["rho"] == pytest.approx(1.0) and res["good"][1]["tau"] == 1.0
    x = [1.0, 3.0, 2.0, 0.0]
    assert res["mixed"][0]["rho"] == pytest.approx(sps.spearmanr(x, fit["scale"]).statistic)
    assert res["mixed"][1]["tau"] == pytest.approx(sps.kendalltau(x, fit["scale"]).statistic)
    assert res["flat"] == (None, None)
    with pytest.raises(ValueError, match="no value for the conditions"):
        S.metric_agreement(fit, {"partial": {"a": 1.0}})
