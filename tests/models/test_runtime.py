"""The inference runtimes: ONNX export from the package weights, int8 vs fp32, the
precision probe and its cache, length-sorted chunks, the version string, and the rule
that models/ imports nothing from stream/ or dashboard/.

The ONNX files are exported once for the module into a temporary runtime folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.artifact_store import RUNTIME_GATE
from models.config import PRECISIONS, ScorerConfig
from models.cpu import model_name, numerics
from models.data import OUT_OF_TIME_ORIGIN, read_jsonl
from models.export import EXPORT_FILES
from models.paths import ARTIFACTS_DIR
from models.runtime import (
    cached_probe,
    chunk_size_for,
    embed_sorted,
    fastest,
    openvino_available,
    pad_chunk,
    probe_key,
    probe_texts,
    time_encoder,
)
from models.scorer import (
    allowed_variants,
    artifacts_hash,
    build_encoder,
    choose_variant,
    export_runtime,
    load_scorer,
    probe_file,
)
from stream.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "Trump 2024! Best president ever #MAGA",
    "Trump is a liar and a crook, he must never be president again",
    "The livestream is down again, the site keeps crashing and buffering",
    "Harris had the better answer on the economy tonight",
    "ok",
    "Inflation and grocery prices are crushing working families, jobs and wages matter, "
    "and nobody on that stage said a single word about rent in my city",
    "just baked banana bread and went for a walk with my dog",
    "Elon Musk should stick to rockets",
]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> ScorerConfig:
    return ScorerConfig(threads=2, runtime_dir=tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def exported(config) -> dict[str, Path]:
    return export_runtime(config)


def test_export_builds_runnable_models_from_package_weights(exported):
    int8 = {"onnx-int8", "openvino-int8"} if openvino_available() else {"onnx-int8"}
    openvino_bf16 = {"openvino-bf16"} if openvino_available() else set()
    assert set(exported) == {"onnx-fp32"} | int8 | openvino_bf16
    if openvino_bf16:  # bf16 runs the fp32 file itself: nothing more to export
        assert exported["openvino-bf16"] == exported["onnx-fp32"]
    for path in exported.values():
        assert path.exists() and path.parent.name == artifacts_hash(ARTIFACTS_DIR)
    for variant in int8:
        size = sum(
            p.stat().st_size
            for p in (exported[variant], exported[variant].with_suffix(".bin"))
            if p.exists()
        )
        assert size < 0.75 * exported["onnx-fp32"].stat().st_size, variant
    assert not list(ROOT.glob("models/**/*.onnx"))  # never inside the package


def test_onnx_fp32_matches_torch(config, exported):
    torch_emb = build_encoder("torch-fp32", config).encode(TEXTS)
    onnx_emb = build_encoder("onnx-fp32", config).encode(TEXTS)
    assert onnx_emb.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(onnx_emb, torch_emb, atol=1e-4)
    assert np.allclose(np.linalg.norm(onnx_emb, axis=1), 1.0, atol=1e-5)  # normalised in graph


def test_int8_labels_agree_with_fp32(config, exported):
    texts = TEXTS + probe_texts(120)
    ref = load_scorer(config, precision="fp32").score_texts(texts)
    got = load_scorer(config, precision="int8").score_texts(texts)
    pairs = list(zip(ref, got, strict=True))
    for task in ("sentiment", "emotion"):
        agree = np.mean([a[task]["label"] == b[task]["label"] for a, b in pairs])
        assert agree >= 0.85, (task, agree)
    stance = [
        a["stance"][t]["label"] == b["stance"][t]["label"] for a, b in pairs for t in a["stance"]
    ]
    assert np.mean(stance) >= 0.85


def test_openvino_int8_labels_agree_with_fp32(config, exported):
    if "openvino-int8" not in exported:
        pytest.skip("openvino/nncf not installed")
    texts = TEXTS + probe_texts(120)
    ref = load_scorer(config, precision="fp32").score_texts(texts)
    got = load_scorer(config, precision="openvino-int8").score_texts(texts)
    for task in ("sentiment", "emotion"):
        agree = np.mean(
            [a[task]["label"] == b[task]["label"] for a, b in zip(ref, got, strict=True)]
        )
        assert agree >= 0.9, (task, agree)


def test_version_names_runtime_and_precision(config, exported):
    pairs = [("int8", "onnx-int8"), ("torch-fp32", "torch-fp32")]
    if "openvino-int8" in exported:
        pairs.append(("openvino-int8", "openvino-int8"))
    for precision, variant in pairs:
        scorer = load_scorer(config, targets=["Donald Trump"], precision=precision)
        assert scorer.variant == variant
        assert scorer.version.endswith(f"+{variant}")


def test_eval_encodes_on_the_runtime_the_worker_would_pick(config, exported):
    """`models eval` / `calibrate` judge the model on the variant the config picks."""
    from models.scorer import load_on_runtime

    encoder, heads, meta = load_on_runtime(ARTIFACTS_DIR, replace(config, precision="fp32"))
    assert encoder.runtime.variant == "onnx-fp32"
    assert meta["max_length"] == 64 and heads.dim == 384
    reference = build_encoder("torch-fp32", config).encode(TEXTS)
    np.testing.assert_allclose(encoder.encode(TEXTS), reference, atol=1e-4)


def test_sorted_chunks_restore_input_order():
    ids = [[7] * n for n in (5, 1, 9, 3, 3, 12, 2)]
    widths = []

    def runtime(input_ids, mask):
        widths.append(input_ids.shape[1])
        return np.repeat(mask.sum(1, keepdims=True).astype(np.float32), 2, axis=1)

    out = embed_sorted(runtime, ids, chunk_size=3, dim=2)
    assert out[:, 0].tolist() == [5, 1, 9, 3, 3, 12, 2]
    assert widths == [3, 9, 12]  # each chunk padded to its own longest text
    widths.clear()
    embed_sorted(runtime, ids, chunk_size=3, dim=2, sort=False)
    assert widths == [9, 12, 2]
    input_ids, mask = pad_chunk([[1, 2], [3]], pad_id=0)
    assert input_ids.tolist() == [[1, 2], [3, 0]] and mask.tolist() == [[1, 1], [1, 0]]


def test_a_small_batch_is_split_so_every_stream_has_a_chunk():
    """A runtime with parallel streams (OpenVINO) gets at least one chunk per stream; the
    others keep the configured size (docs/benchmarks.md, Session 15: ~65 -> 122-136 posts/s for
    batches of 32 on two streams)."""
    assert [chunk_size_for(n, 32, 2) for n in (1, 8, 32, 48, 64, 256)] == [1, 4, 16, 24, 32, 32]
    assert [chunk_size_for(n, 32, 1) for n in (1, 8, 32, 256)] == [1, 8, 32, 32]  # one chunk
    assert chunk_size_for(0, 32, 2) == 32

    class TwoStreams:
        streams = 2

        def __init__(self) -> None:
            self.rows: list[int] = []

        def __call__(self, input_ids, mask):
            self.rows.append(len(input_ids))
            return np.repeat(mask.sum(1, keepdims=True).astype(np.float32), 2, axis=1)

    ids = [[7] * (1 + i % 5) for i in range(32)]
    runtime = TwoStreams()
    out = embed_sorted(runtime, ids, chunk_size=32, dim=2)
    assert runtime.rows == [16, 16]
    assert out[:, 0].tolist() == [len(x) for x in ids]  # still in the input order


def test_the_probe_times_a_burst_and_a_trickle_of_small_batches():
    """The worker sees both a 256-post burst and a paced stream's small batches; runtimes
    rank differently on the two, so the probe times both (and its cache key says so)."""

    class Recorder:
        chunk_size = 32

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def encode(self, texts):
            self.sizes.append(len(texts))
            return np.zeros((len(texts), 2), dtype=np.float32)

    encoder = Recorder()
    rate = time_encoder(encoder, probe_texts(64), repeats=1, trickle_batch=16)  # type: ignore[arg-type]
    assert encoder.sizes == [32, 64, 16, 16, 16, 16]  # warm-up, burst, trickle
    assert rate > 0
    assert probe_key("abc", ["onnx-fp32"], 2).endswith("|probe3")


def test_sorting_does_not_change_embeddings(config):
    encoder = build_encoder("torch-fp32", replace(config, chunk_size=3))
    sorted_emb = encoder.encode(TEXTS)
    encoder.sort_by_length = False
    np.testing.assert_allclose(encoder.encode(TEXTS), sorted_emb, atol=1e-5)


def test_probe_picks_an_allowed_variant_and_caches_it(config, exported, tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, artifacts)
    (artifacts / RUNTIME_GATE).unlink(missing_ok=True)  # no verdict: only fp32 may run
    assert allowed_variants(artifacts) == ["torch-fp32", "onnx-fp32"]
    cfg = replace(config, runtime_dir=tmp_path / "rt", precision="auto")
    shutil.copytree(exported["onnx-fp32"].parent, cfg.runtime_dir / artifacts_hash(artifacts))
    chosen = choose_variant(cfg, artifacts)
    assert chosen in {"torch-fp32", "onnx-fp32"}
    cache = json.loads(probe_file(cfg).read_text())
    (entry,) = cache.values()
    assert entry["chosen"] == chosen
    assert set(entry["results"]) == {"torch-fp32", "onnx-fp32"}
    assert all(r["posts_per_s"] > 0 and r["usable"] for r in entry["results"].values())

    def no_probe(*args, **kwargs):
        raise AssertionError("the cached result must be used")

    monkeypatch.setattr("models.scorer.probe_variants", no_probe)
    assert choose_variant(cfg, artifacts) == chosen
    # a verdict for these exact artifacts lets int8 compete; a stale one does not
    here = numerics("onnx-int8")
    int8 = {"onnx-int8": {here: {"ok": True, "file": EXPORT_FILES["onnx-int8"]}}}
    gate = {"artifacts_hash": artifacts_hash(artifacts), "variants": int8}
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate))
    assert "onnx-int8" in allowed_variants(artifacts)
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate | {"artifacts_hash": "0" * 8}))
    assert "onnx-int8" not in allowed_variants(artifacts)
    # the OpenVINO variants compete only with a passing verdict of their own
    both = {
        v: {numerics(v): {"ok": v == "openvino-bf16", "file": EXPORT_FILES[v]}}
        for v in ("openvino-bf16", "openvino-int8")
    }
    gate = {"artifacts_hash": artifacts_hash(artifacts), "variants": both}
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate))
    allowed = allowed_variants(artifacts)
    assert "openvino-int8" not in allowed
    assert ("openvino-bf16" in allowed) == openvino_available()


def test_an_explicit_bf16_on_a_cpu_without_bf16_is_kept_with_a_warning(monkeypatch, caplog):
    """The user's choice stands, but they learn it is emulated (8x slower on AVX2 only)."""
    import models.scorer

    cfg = ScorerConfig(precision="bf16")
    for has_bf16, warned in ((False, True), (True, False)):
        monkeypatch.setattr(models.scorer, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        caplog.clear()
        with caplog.at_level("WARNING", logger="models.scorer"):
            assert choose_variant(cfg) == "torch-bf16"
        assert ("no BF16 instructions" in caplog.text) is warned


def test_probe_skips_a_drifting_variant(tmp_path):
    results = {
        "torch-fp32": {"posts_per_s": 100.0, "min_cosine": 1.0, "usable": True},
        "onnx-int8": {"posts_per_s": 900.0, "min_cosine": 0.2, "usable": False},
    }
    assert fastest(results) == "torch-fp32"
    assert cached_probe(tmp_path / "p.json", "k", lambda: results) == results
    assert json.loads((tmp_path / "p.json").read_text())["k"]["chosen"] == "torch-fp32"


def test_settings_build_the_scorer_config(tmp_path):
    settings = Settings(
        targets=["A"], score_precision="int8", score_chunk_size=16, score_runtime_dir=tmp_path
    )
    cfg = settings.scorer_config()
    assert (cfg.targets, cfg.precision, cfg.chunk_size, cfg.runtime_dir) == (
        ("A",),
        "int8",
        16,
        tmp_path,
    )
    assert set(PRECISIONS) >= {"auto", "fp32", "bf16", "int8"}
    with pytest.raises(ValueError):
        Settings(score_precision="fp8")


def _sample_data(root: Path, out: Path) -> Path:
    """A few rows of every dev file the gate reads (real posts from the shared data): the
    first rows of each, the latest year's sentiment rows and 30 P-Stance posts per target."""
    sentiment = read_jsonl(root / "sentiment/train.jsonl")
    late = [r for r in sentiment if r.get("origin") == OUT_OF_TIME_ORIGIN]
    pstance = read_jsonl(root / "stance/pstance_val.jsonl")
    targets = {r["target"] for r in pstance}
    picks = {
        "sentiment/train.jsonl": late[:40],
        "sentiment/val.jsonl": read_jsonl(root / "sentiment/val.jsonl")[:60],
        "emotion/val.jsonl": read_jsonl(root / "emotion/val.jsonl")[:40],
        "stance/tweeteval_val.jsonl": read_jsonl(root / "stance/tweeteval_val.jsonl")[:40],
        "stance/semeval2016_trump_weak.jsonl": read_jsonl(
            root / "stance/semeval2016_trump_weak.jsonl"
        )[:30],
        "stance/pstance_val.jsonl": [
            r for t in sorted(targets) for r in [r for r in pstance if r["target"] == t][:30]
        ],
    }
    for name, rows in picks.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _models_cli(config, monkeypatch, tmp_path: Path, *calls: list[str]):  # noqa: ANN001, ANN202
    """Each ``calls`` entry through `swingdial models` on ``config``'s exports, with the
    settings rebuilt from the environment and a home under ``tmp_path``."""
    from click.testing import CliRunner

    from stream.cli.models import models_group
    from stream.config import get_settings

    monkeypatch.setenv("SWINGDIAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWINGDIAL_SCORE_RUNTIME_DIR", str(config.runtime_dir))
    monkeypatch.setenv("SWINGDIAL_SCORE_THREADS", "2")
    get_settings.cache_clear()
    try:
        return [CliRunner().invoke(models_group, args) for args in calls]
    finally:
        get_settings.cache_clear()


def test_export_validate_prints_a_verdict_per_variant_and_keeps_other_cpus(
    config, exported, tmp_path, monkeypatch
):
    """`swingdial models export --validate` on a copy of the packaged model: one line per
    variant naming this CPU's numerics, and the verdicts merged beside another CPU's."""
    artifacts = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, artifacts)
    other_cpu = {"ok": False, "worst_drop_points": 3.05, "file": "x.xml", "cpu": "elsewhere"}
    gate = json.loads((artifacts / RUNTIME_GATE).read_text())
    gate["variants"]["openvino-int8"]["int8-elsewhere+bf16"] = other_cpu
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate))
    data = _sample_data(Settings().shared_data, tmp_path / "data")
    args = ["export", "--validate", "--artifacts", str(artifacts), "--data", str(data)]
    (result,) = _models_cli(config, monkeypatch, tmp_path, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # (progress bars go to stderr)
    assert "onnx-fp32 [fp32]: worst drop +0.00 points (allowed)" in lines
    assert "  sentiment_val_macro_recall" in "\n".join(lines)
    stored = json.loads((artifacts / RUNTIME_GATE).read_text())
    for variant in exported:
        assert any(
            line.startswith(f"{variant} [{numerics(variant)}]: worst drop") for line in lines
        )
        row = stored["variants"][variant][numerics(variant)]
        assert row["file"] == EXPORT_FILES[variant] and row["cpu"] == model_name()
    assert stored["variants"]["openvino-int8"]["int8-elsewhere+bf16"] == other_cpu
    assert lines[-1] == f"verdicts written to {artifacts / RUNTIME_GATE}"


def test_eval_and_calibrate_record_the_numerics_and_cpu_of_their_figures(
    config, exported, tmp_path, monkeypatch
):
    """`models calibrate` then `models eval` on a copy of the packaged model: metrics.json
    says which runtime, numerics and CPU produced its figures and its calibration, and the
    report and the card's runtime line say it in words."""
    from models.artifact_store import read_metrics
    from models.card import _runtime_line

    artifacts = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, artifacts)
    data = _sample_data(Settings().shared_data, tmp_path / "data")
    common = ["--artifacts", str(artifacts), "--data", str(data), "--precision", "fp32"]
    calibrated, evaluated = _models_cli(
        config, monkeypatch, tmp_path, ["calibrate", *common], ["eval", *common]
    )
    assert calibrated.exit_code == 0 and evaluated.exit_code == 0, evaluated.output
    where = {"numerics": "fp32", "cpu": model_name()}
    metrics = read_metrics(artifacts)
    assert metrics["runtime"] == metrics["calibration_runtime"] == "onnx-fp32"
    assert metrics["measured_on"] == where and metrics["calibration_measured_on"] == where
    words = f"fp32 numerics on {model_name() or 'an unnamed CPU'}"
    first = evaluated.stdout.splitlines()[0]
    assert first == f"encoded on onnx-fp32, {words} (the runtime these figures come from)"
    assert _runtime_line(metrics).startswith(
        f"Figures below are encoded on **onnx-fp32 ({words})**; calibration was fitted on "
        f"onnx-fp32 ({words}) logits ("
    )
    older = {k: v for k, v in metrics.items() if not k.endswith("measured_on")}
    assert _runtime_line(older).startswith(
        "Figures below are encoded on **onnx-fp32**; calibration was fitted on onnx-fp32 logits"
    )
