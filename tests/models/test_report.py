"""The `swingdial models` commands' text: exact output of the reports, and the requests
they refuse before any minute of training."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from models.artifact_store import PACKAGED_DIR
from models.report import calibration_report, metrics_report
from models.workflows import TrainRequest, train_model
from stream.cli import main

METRICS = {
    "sentiment": {"macro_recall": 0.7155, "macro_f1": 0.7, "recall": {"negative": 0.8}},
    "sentiment_oot": {
        "macro_recall": 0.6984,
        "macro_f1": 0.69,
        "recall": {"negative": 0.85},
        "held_out_of_training": False,
    },
    "emotion": {"macro_f1": 0.7286},
    "pstance": {"Donald Trump": {"macro_f1": 0.7693, "f1avg": 0.71, "none_rate": 0.05}},
    "tweeteval_stance": {"pooled": {"f1avg": 0.6923, "n": 1249}},
    "loto": {"Joe Biden": {"f1avg": 0.5}},
}

EXPECTED = """\
sentiment                                                 macro-recall    macro-F1  recall
------------------------------------------------------  --------------  ----------  --------------
TweetEval val (same pool as training)                            0.716       0.700  negative 0.800
out-of-time dev (NOT held out: this run trained on it)           0.698       0.690  negative 0.850

emotion macro-F1 0.729

P-Stance        macro-F1 (favor/against)    F1avg (3-way)    none rate
------------  --------------------------  ---------------  -----------
Donald Trump                       0.769            0.710        0.050

TweetEval stance      F1avg (3-way prediction)     n
------------------  --------------------------  ----
pooled                                   0.692  1249

leave-one-target-out      F1avg  macro-F1
----------------------  -------  ----------
Joe Biden                 0.500"""


def test_metrics_report_exact_text():
    assert metrics_report(METRICS) == EXPECTED


def test_metrics_report_says_when_the_out_of_time_year_partly_trained():
    oot = METRICS["sentiment_oot"] | {"held_out_of_training": True, "later_year": False}
    text = metrics_report(METRICS | {"sentiment_oot": oot})
    row = next(line for line in text.splitlines() if line.startswith("out-of-time dev"))
    label = "out-of-time dev (same year: the rest of that year trained)"
    assert row.startswith(label) and row[len(label) :].split()[:2] == ["0.698", "0.690"]


def test_calibration_report_names_every_head():
    params = {"sentiment": {"temperature": 1.1, "bias": [0.1, 0.2, 0.0]}}
    report = {
        "sentiment": {
            "ece_before": 0.073,
            "ece_after": 0.051,
            "dev": "out-of-time",
            "n": 4000,
            "cross_fitted": {"macro_recall": 0.7, "recall": {"neutral": 0.6}},
        }
    }
    text = calibration_report(params, report)
    assert "sentiment  1.100  [0.1, 0.2, 0.0]         0.073        0.051  out-of-time  4000" in text
    assert text.endswith("macro-recall 0.700 (neutral 0.600)")


def test_requests_that_would_leak_or_overwrite_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="from scratch"):
        TrainRequest(base=tmp_path, exclude_targets=("Joe Biden",)).check()
    with pytest.raises(ValueError, match="needs the run"):
        TrainRequest(method="refit-stance").check()
    with pytest.raises(ValueError, match="read-only"):
        train_model(TrainRequest(method="frozen"), tmp_path, PACKAGED_DIR)
    with pytest.raises(ValueError, match="refit-sentiment only"):
        TrainRequest(method="frozen", sentiment_hold_out="dev-sample").check()
    with pytest.raises(ValueError, match="year, dev-sample"):
        TrainRequest(sentiment_hold_out="none").check()


def test_train_cli_refuses_frozen_embeddings_outside_full_fine_tuning(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["models", "train", "--freeze-embeddings", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and "method full only" in result.output
    assert not (tmp_path / "run").exists()


def test_train_cli_refuses_a_leaking_loto_run_at_once(tmp_path: Path):
    result = CliRunner().invoke(
        main,
        ["models", "train", "--exclude-target", "Joe Biden", "--base", str(tmp_path)],
    )
    assert result.exit_code == 2 and "from scratch" in result.output


def test_train_cli_maps_every_option_onto_the_request(tmp_path: Path):
    """Every option reaches TrainRequest by name (a bad mix is refused before training)."""
    result = CliRunner().invoke(
        main,
        ["models", "train", "--mix", "0.5", "0.5", "0.5", "--out", str(tmp_path / "run"),
         "--rank", "4", "--epochs", "1", "--lr", "0.001", "--max-length", "32",
         "--weak-limit", "10", "--sentiment-limit", "10", "--time-budget-min", "1",
         "--neutral-weight", "1.5", "--seed", "3", "--batch-size", "8",
         "--train-dropout", "0", "--sentiment-hold-out", "dev-sample"],
    )  # fmt: skip
    assert result.exit_code == 2 and "add up to 1" in result.output
    assert not (tmp_path / "run").exists()
