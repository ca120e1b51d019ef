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


def machine_key() -> str:
    """Short id of the CPU model, its flags and the cores available (probe cache key)."""
    info = _cpuinfo()
    model = next((ln.split(":", 1)[1] for ln in info.splitlines() if "model name" in ln), "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{platform.machine()}|{model.strip()}|{' '.join(sorted(cpu_flags()))}|{cores}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]
