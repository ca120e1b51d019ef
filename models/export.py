"""Export the trained encoder to ONNX (fp32, dynamic int8) and OpenVINO static int8,
built on demand and cached.

The graph holds the whole sentence encoder as the scorer uses it: MiniLM with the LoRA
adapters merged, mean pooling over the attention mask and L2 normalisation, so its output
is the embedding the heads read (``models.encoder.Encoder.forward``). The files (~90 MB
fp32, ~59 MB ORT int8, ~34 MB OpenVINO int8) never go into the repository: they live under
``<runtime_dir>/<artifacts hash>/`` and are rebuilt from the package weights whenever the
artifacts change. The OpenVINO int8 file is calibrated on training-pool texts
(:mod:`models.quantize`), so building it needs the labelled data.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from models.cpu import cpu_has_vnni
from models.encoder import Encoder

ONNX_FILES = {"onnx-fp32": "encoder-fp32.onnx", "onnx-int8": "encoder-int8.onnx"}
# Run by OpenVINO: static int8 (an IR whose .xml names a .bin beside it, built from the
# fp32 ONNX file and calibrated on training texts; the name carries the recipe, so a new
# recipe never reuses a cached file of the old one), and bf16 (the fp32 ONNX file itself,
# compiled with bf16 inference precision). Without VNNI the int8 weights use half the
# 8-bit range (models.quantize): a different file, so a cache shared between CPUs never
# hands one CPU the other's model.
INT8_HALF_RANGE = not cpu_has_vnni()
OPENVINO_FILES = {
    "openvino-int8": "encoder-int8-nncf-ffnf-w7.xml"
    if INT8_HALF_RANGE
    else "encoder-int8-nncf-ffnf.xml",
    "openvino-bf16": "encoder-fp32.onnx",
}
CALIBRATED = {"openvino-int8"}
EXPORT_FILES = {**ONNX_FILES, **OPENVINO_FILES}
OPSET = 17


def export_fp32(encoder: Encoder, out: Path) -> Path:
    """Trace the encoder (LoRA merged) + pooling + normalisation to ``out`` (dynamic
    batch and length)."""
    encoder.eval()
    encoder.model.config._attn_implementation = "eager"  # plain ops ONNX Runtime can fuse

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder({"input_ids": input_ids, "attention_mask": attention_mask})

    batch = encoder.tokenize(["an example post to trace", "and a second, longer one to pad"])
    with torch.no_grad():
        torch.onnx.export(
            Pooled().eval(),
            (batch["input_ids"], batch["attention_mask"]),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    return out


def quantize_int8(fp32: Path, out: Path) -> Path:
    """ONNX Runtime dynamic quantization: int8 per-channel weights of every MatMul,
    activations quantized per batch at run time (no calibration data needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32),
        str(out),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    return out


def ensure_exported(
    variant: str,
    folder: Path,
    load_encoder: Callable[[], Encoder],
    calibration: Callable[[], Sequence[dict[str, np.ndarray]]] | None = None,
) -> Path:
    """Path of the model file for ``variant`` in ``folder`` (one folder per artifacts hash),
    exporting (and quantizing) it on first use from ``load_encoder()``; ``calibration()``
    gives the model inputs static int8 is calibrated on (needed for ``openvino-int8``).

    Files are written under a temporary name and renamed (the OpenVINO .bin before its
    .xml), so concurrent workers never read a half-written model.
    """
    from models.quantize import quantize_openvino_int8

    target = folder / EXPORT_FILES[variant]
    if target.exists():
        return target
    if variant in CALIBRATED and calibration is None:
        raise ValueError(f"{variant} is calibrated on training texts: pass calibration")
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / ONNX_FILES["onnx-fp32"]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        if not fp32.exists():
            os.replace(export_fp32(load_encoder(), Path(tmp) / "fp32.onnx"), fp32)
        if variant == "onnx-int8":
            os.replace(quantize_int8(fp32, Path(tmp) / "int8.onnx"), target)
        elif variant in CALIBRATED:
            assert calibration is not None  # checked above
            xml = quantize_openvino_int8(
                fp32, Path(tmp) / "int8.xml", calibration(), half_range_weights=INT8_HALF_RANGE
            )
            os.replace(xml.with_suffix(".bin"), target.with_suffix(".bin"))
            os.replace(xml, target)
    return target
