"""Precision verdicts per CPU numerics: a gate measured on one CPU allows a reduced
precision only on CPUs that round the same way (docs/benchmarks.md, Session 18)."""

from __future__ import annotations

import json
import shutil

import pytest

import models.cpu
from models.artifact_store import RUNTIME_GATE, artifacts_hash, gate_verdict, merge_gate
from models.cpu import numerics
from models.export import EXPORT_FILES
from models.paths import ARTIFACTS_DIR
from models.scorer import allowed_variants

# /proc/cpuinfo flag lines of the CPU kinds the sessions ran on
ZEN3 = "fpu sse2 avx avx2 fma f16c"
ICE_LAKE = "fpu avx avx2 avx512f avx512bw avx512_vnni"
ZEN5 = "fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni avx_vnni"
SAPPHIRE_RAPIDS = "fpu avx2 avx512f avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_int8 amx_tile"


def on_cpu(monkeypatch, flags: str) -> None:
    monkeypatch.setattr(models.cpu, "_cpuinfo", lambda: f"model name\t: test\nflags\t\t: {flags}\n")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (ZEN3, ("fp32", "fp32", "bf16", "int8-none+fp32")),
        (ICE_LAKE, ("fp32", "fp32", "bf16", "int8-vnni+fp32")),
        (ZEN5, ("fp32", "bf16", "bf16", "int8-vnni+bf16")),
        (SAPPHIRE_RAPIDS, ("fp32", "bf16", "bf16", "int8-amx+bf16")),
    ],
)
def test_numerics_name_what_decides_each_variants_numbers(monkeypatch, flags, expected):
    on_cpu(monkeypatch, flags)
    variants = ("onnx-fp32", "openvino-bf16", "torch-bf16", "openvino-int8")
    assert tuple(numerics(v) for v in variants) == expected
    assert numerics("onnx-int8") == numerics("openvino-int8")


def _row(ok: bool, drop: float, file: str = EXPORT_FILES["onnx-int8"]) -> dict:
    return {"ok": ok, "worst_drop_points": drop, "file": file}


def test_gates_run_on_different_cpus_add_up():
    bf16_cpu = {
        "artifacts_hash": "abc",
        "variants": {"openvino-int8": {"int8-vnni+bf16": _row(False, 0.79)}},
    }
    fp32_cpu = {
        "artifacts_hash": "abc",
        "variants": {
            "openvino-int8": {"int8-vnni+fp32": _row(True, 0.3)},
            "openvino-bf16": {"fp32": _row(True, 0.0)},
        },
    }
    merged = merge_gate(bf16_cpu, fp32_cpu)
    assert merged["variants"] == {
        "openvino-int8": {"int8-vnni+bf16": _row(False, 0.79), "int8-vnni+fp32": _row(True, 0.3)},
        "openvino-bf16": {"fp32": _row(True, 0.0)},
    }
    # the same CPU measured again replaces its row; another model's verdicts are dropped
    remeasured = {"openvino-int8": {"int8-vnni+bf16": _row(True, 0.4)}}
    again = {"artifacts_hash": "abc", "variants": remeasured}
    assert merge_gate(merged, again)["variants"]["openvino-int8"]["int8-vnni+bf16"]["ok"] is True
    other_model = {**again, "artifacts_hash": "def"}
    assert merge_gate(merged, other_model) == other_model
    # a flat verdict of the older form names no CPU: it is not carried over
    flat = {"artifacts_hash": "abc", "variants": {"openvino-int8": _row(True, 0.1)}}
    assert merge_gate(flat, fp32_cpu)["variants"] == fp32_cpu["variants"]


def test_a_verdict_allows_a_variant_only_on_a_cpu_with_its_numerics(tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS_DIR, artifacts)
    gate = {
        "artifacts_hash": artifacts_hash(artifacts),
        "variants": {
            "onnx-int8": {"int8-vnni+bf16": _row(True, 0.2), "int8-vnni+fp32": _row(False, 1.1)},
        },
    }
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate))
    expected = {ZEN5: True, SAPPHIRE_RAPIDS: False, ICE_LAKE: False, ZEN3: False}
    for flags, allowed in expected.items():
        on_cpu(monkeypatch, flags)
        found = gate_verdict(gate, "onnx-int8", EXPORT_FILES["onnx-int8"])
        assert (found is not None) is (flags in (ZEN5, ICE_LAKE))
        assert ("onnx-int8" in allowed_variants(artifacts)) is allowed
    # the older flat form allows nothing beyond fp32
    flat = {"artifacts_hash": artifacts_hash(artifacts), "variants": {"onnx-int8": _row(True, 0)}}
    (artifacts / RUNTIME_GATE).write_text(json.dumps(flat))
    on_cpu(monkeypatch, ZEN5)
    assert gate_verdict(flat, "onnx-int8", EXPORT_FILES["onnx-int8"]) is None
    assert "onnx-int8" not in allowed_variants(artifacts)
    # a verdict on another recipe's file (an older int8 build) is no verdict for this one
    gate["variants"]["onnx-int8"]["int8-vnni+bf16"]["file"] = "encoder-int8-older-recipe.onnx"
    (artifacts / RUNTIME_GATE).write_text(json.dumps(gate))
    assert gate_verdict(gate, "onnx-int8", EXPORT_FILES["onnx-int8"]) is None
    assert "onnx-int8" not in allowed_variants(artifacts)


def test_the_packaged_gate_names_its_cpu_for_every_verdict():
    gate = json.loads((ARTIFACTS_DIR / RUNTIME_GATE).read_text())
    assert gate["artifacts_hash"] == artifacts_hash(ARTIFACTS_DIR)
    for rows in gate["variants"].values():
        assert rows and all("ok" in row and row["cpu"] and row["file"] for row in rows.values())
