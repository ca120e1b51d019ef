"""Calibration: temperature/bias fitting, ECE, cross-fitting, and the scorer applying it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.artifact_store import CALIBRATION as CALIBRATION_FILE
from models.artifact_store import read_calibration
from models.calibration import (
    calibrate,
    cross_fit,
    ece,
    fit,
    reliability,
    softmax,
)


def _sample(n: int, temperature: float, prior_shift=(0.0, 0.0, 0.0), seed: int = 0):
    """Logits and labels drawn from softmax(logits / temperature + shift)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 3
    probs = softmax(logits / temperature + np.asarray(prior_shift))
    y = np.array([rng.choice(3, p=p) for p in probs])
    return logits, y


def test_no_parameters_is_plain_softmax():
    z = np.array([[1.0, 2.0, 0.5]])
    assert np.allclose(calibrate("sentiment", z, None), softmax(z))
    assert np.allclose(calibrate("sentiment", z, {"stance": {"temperature": 3.0}}), softmax(z))


def test_temperature_and_bias_are_applied():
    z = np.array([[1.0, 2.0, 0.5]])
    params = {"sentiment": {"temperature": 2.0, "bias": [0.0, 1.0, 0.0]}}
    assert np.allclose(calibrate("sentiment", z, params), softmax(z / 2 + [0, 1, 0]))


def test_fit_recovers_temperature_of_overconfident_logits():
    logits, y = _sample(4000, temperature=2.5)
    params = fit(logits, y)
    assert 2.1 < params["temperature"] < 2.9
    assert ece(calibrate("h", logits, {"h": params}), y) < ece(softmax(logits), y) / 3


def test_fit_with_bias_recovers_a_prior_shift():
    shift = [-0.5, 1.0, -0.5]
    logits, y = _sample(6000, temperature=1.0, prior_shift=shift, seed=1)
    params = fit(logits, y, bias=True)
    assert abs(params["temperature"] - 1.0) < 0.15
    assert np.allclose(params["bias"], np.asarray(shift) - np.mean(shift), atol=0.2)
    # The balanced objective pushes further towards the rarer classes than plain NLL.
    balanced = fit(logits, y, bias=True, balanced=True)
    assert balanced["bias"][1] < params["bias"][1]


def test_cross_fit_scores_each_half_with_parameters_from_the_other():
    logits, y = _sample(1000, temperature=2.0, seed=2)
    idx = np.arange(len(y))
    halves = (idx[:500], idx[500:])
    probs = cross_fit("h", logits, y, halves)
    expected_b = calibrate("h", logits[500:], {"h": fit(logits[:500], y[:500])})
    assert np.allclose(probs[500:], expected_b)
    assert np.allclose(probs.sum(1), 1.0)


def test_ece_and_reliability_of_a_calibrated_sample():
    logits, y = _sample(5000, temperature=1.0, seed=3)
    assert ece(softmax(logits), y) < 0.03
    assert ece(softmax(logits * 3), y) > 0.1  # sharpened: over-confident
    points = reliability(softmax(logits), y)
    assert sum(p["n"] for p in points) == len(y)
    assert all(abs(p["confidence"] - p["accuracy"]) < 0.1 for p in points if p["n"] > 300)


def test_read_calibration_missing_file_is_empty(tmp_path):
    assert read_calibration(tmp_path) == {}


@pytest.fixture(scope="module")
def model():
    from models.scorer import load_model

    return load_model()


def test_scorer_applies_calibration(model):
    import torch

    from models.scorer import Scorer

    encoder, heads, _ = model
    params = {"sentiment": {"temperature": 2.0, "bias": [0.0, 0.5, 0.0]}}
    plain = Scorer(encoder, heads, version="t", targets=["Donald Trump"], cache_size=0)
    tuned = Scorer(
        encoder, heads, version="t", targets=["Donald Trump"], cache_size=0, calibration=params
    )
    text = "the debate tonight was fine i guess"
    with torch.inference_mode():
        logits = heads.sentiment(torch.from_numpy(encoder.encode([text]))).numpy()
    want = calibrate("sentiment", logits, params)[0]
    got = tuned.score_texts([text])[0]["sentiment"]["scores"]
    assert np.allclose(list(got.values()), want, atol=1e-4)
    assert plain.score_texts([text])[0]["stance"] == tuned.score_texts([text])[0]["stance"]


def test_load_scorer_reads_calibration_file_and_versions_it(tmp_path):
    from models.paths import ARTIFACTS_DIR
    from models.scorer import load_scorer, model_version
    from stream.config import Settings

    for path in ARTIFACTS_DIR.iterdir():
        if path.name != CALIBRATION_FILE and path.is_file():
            shutil.copy2(path, tmp_path / path.name)
    before = model_version(tmp_path)
    params = {"stance": {"temperature": 1.7}}
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(params))
    scorer = load_scorer(Settings(score_threads=2), targets=["Joe Biden"], artifacts=tmp_path)
    assert scorer.calibration == params
    assert scorer.version != before  # the probabilities changed, so the version does


def test_fit_calibration_per_head_from_dev_logits(tmp_path):
    from models.evaluate import DevSet, fit_calibration, load_dev_logits, save_dev_logits
    from models.report import OOT_TWEETEVAL_SPELLING

    def dev(head: str, labels: list[str], temperature: float, seed: int, targets=False) -> DevSet:
        logits, y = _sample(1200, temperature, seed=seed)
        k = len(labels)
        logits, y = logits[:, :k], np.minimum(y, k - 1)
        gold = [labels[i] for i in y]
        return DevSet(head, logits, gold, ["Joe Biden"] * len(gold) if targets else None)

    sets = {
        OOT_TWEETEVAL_SPELLING: dev("sentiment", ["negative", "neutral", "positive"], 2.0, 1),
        "emotion_val": dev("emotion", ["anger", "joy", "optimism"], 0.7, 2),
        "pstance_val": dev("stance", ["favor", "against", "none"], 1.5, 3, targets=True),
        "tweeteval_stance_val": dev("stance", ["favor", "against", "none"], 1.5, 4, targets=True),
    }
    save_dev_logits(sets, tmp_path / "dev")
    loaded = load_dev_logits(tmp_path / "dev")
    assert np.allclose(loaded["pstance_val"].logits, sets["pstance_val"].logits)
    params, report = fit_calibration(loaded)
    assert set(params) == {"sentiment", "stance", "emotion"}
    assert "bias" in params["sentiment"] and "bias" not in params["stance"]
    assert params["sentiment"]["temperature"] > 1.5  # over-confident logits get cooled
    assert params["sentiment"]["fitted_on"] == [OOT_TWEETEVAL_SPELLING]
    assert report["stance"]["n"] == 2400
    assert report["sentiment"]["ece_after"] < report["sentiment"]["ece_before"]
    assert 0 < report["sentiment"]["cross_fitted"]["macro_recall"] <= 1
