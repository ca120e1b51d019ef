"""What this CPU is: the flags precision choices look at and a key for per-machine caches.

Kept free of torch and onnxruntime so the CLI and settings can import it cheaply.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The flags line of /proc/cpuinfo (empty where there is none)."""
    line = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("flags")), ":")
    return set(line.split(":", 1)[1].split())


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX. Says the ops exist, not that they are fast: without AMX, torch
    bf16 autocast measured slower than fp32 (docs/benchmarks.md), so scoring precision is
    chosen by a timed probe, not by this flag; training uses it for its autocast."""
    return not cpu_flags().isdisjoint({"avx512_bf16", "amx_bf16"})


def cpu_has_vnni() -> bool:
    """AVX512-VNNI, AVX-VNNI or AMX-INT8: int8 dot products without the 16-bit intermediate
    that older kernels (AVX2, plain AVX-512) saturate. Without them a static int8 model needs
    weights in half the 8-bit range (:func:`models.quantize.quantize_openvino_int8`)."""
    return not cpu_flags().isdisjoint({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_kernels() -> str:
    """The int8 dot products this CPU has: ``amx`` (AMX-INT8 tiles), ``vnni`` (AVX512-VNNI or
    AVX-VNNI) or ``none`` (16-bit intermediates that saturate: half-range weights)."""
    flags = cpu_flags()
    if "amx_int8" in flags:
        return "amx"
    return "vnni" if cpu_has_vnni() else "none"


def numerics(variant: str) -> str:
    """What on this CPU decides ``variant``'s numbers, so a precision gate verdict measured on
    one CPU is reused only where the numbers are the same: ``fp32`` for fp32 variants and for
    OpenVINO's bf16 on a CPU without BF16 (the scorer asks the plugin for fp32 there; torch
    emulates bf16 instead), ``bf16`` otherwise, and for int8 the int8 kernels plus the
    precision of the float ops (OpenVINO runs an int8 model's float parts in bf16 where
    the CPU has it), e.g. ``int8-vnni+fp32``."""
    precision = variant.rsplit("-", 1)[-1]
    floats = "bf16" if cpu_has_bf16() else "fp32"
    if precision == "int8":
        return f"int8-{int8_kernels()}+{floats}"
    if precision == "bf16":
        return floats if variant.startswith("openvino-") else "bf16"
    return "fp32"


def model_name() -> str:
    """The CPU's model name as lscpu shows it (empty where /proc/cpuinfo has none)."""
    info = _cpuinfo()
    return next((ln.split(":", 1)[1] for ln in info.splitlines() if "model name" in ln), "").strip()


def measured_on(variant: str) -> dict[str, str]:
    """Where a figure of ``variant`` comes from: its numerics here and the CPU's name, stored
    beside the runtime's name so a figure read later says which arithmetic produced it."""
    return {"numerics": numerics(variant), "cpu": model_name()}


def describe(where: dict[str, str]) -> str:
    """A :func:`measured_on` record as words, e.g. ``fp32 numerics on Intel(R) Xeon(R) …``."""
    return f"{where['numerics']} numerics on {where.get('cpu') or 'an unnamed CPU'}"


def machine_key() -> str:
    """Short id of the CPU model, its flags and the cores available (probe cache key)."""
    model = model_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{platform.machine()}|{model}|{' '.join(sorted(cpu_flags()))}|{cores}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]
