"""`swingdial bench pipeline` runs the real processes and reports its figures (values are
machine-dependent: only their presence and sanity are checked, never a speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_bench_pipeline_json_reports_every_figure(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWINGDIAL_")}
    env["SWINGDIAL_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "bench", "pipeline", "--stub-model", "--posts",
         "300", "--baseline-posts", "40", "--rss-every", "100", "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["machine"]["model"]
    assert summary["end_to_end_posts_per_s"] > 0
    assert summary["ratio_to_per_message"] > 0
    baseline, burst = summary["runs"]
    assert baseline["batch_size"] == 1 and baseline["posts"] == 40
    assert burst["posts"] == 300 and burst["stub_model"] is True
    assert burst["latency_ms"]["p50"] <= burst["latency_ms"]["p95"] <= burst["latency_ms"]["max"]
    assert burst["peak_rss_mb"]["worker"] > 0 and burst["peak_rss_mb"]["sink"] > 0
    assert [s["stored"] >= 100 for s in burst["rss_samples"]] and len(burst["rss_samples"]) >= 1
