"""Model-only benchmark: posts/s of the full scorer (encoder + every head + topics).

Two modes:

- :func:`run_bench`: synthetic, all-distinct tweets (the LRU cache never helps) in batches
  like the worker's, on one runtime variant: posts/s, p50/p95 batch latency, peak RSS.
- :func:`compare`: real tweets (sentiment val from the labelled data) through each
  runtime variant, batch 64 and 256, length-sorted chunks vs arrival order, with label
  agreement against torch fp32: what docs/benchmarks.md records.

    python -m models.bench --batch 64 --batches 20
    swingdial models bench --compare
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.config import VARIANTS, ScorerConfig
from models.runtime import probe_texts


def synthetic_posts(n: int, seed: int = 0) -> list[str]:
    """Distinct tweet-like texts of 8-40 words."""
    return probe_texts(n, seed)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _config(threads: int | None, precision: str, **extra: Any) -> ScorerConfig:
    return ScorerConfig(cache_size=0, threads=threads or 0, precision=precision, **extra)


def run_bench(
    *,
    batch: int = 64,
    batches: int = 10,
    warmup: int = 1,
    artifacts: Path | None = None,
    threads: int | None = None,
    precision: str = "auto",
    config: ScorerConfig | None = None,
) -> dict:
    """Load the scorer (cache off), score ``batches`` batches, return the measurements."""
    import torch

    from models.scorer import load_scorer

    cfg = replace(config, cache_size=0) if config else _config(threads, precision)
    if threads:
        torch.set_num_threads(threads)
    scorer = load_scorer(cfg, artifacts=artifacts, precision=precision)
    texts = synthetic_posts(batch * (batches + warmup))
    for i in range(warmup):
        scorer.score_texts(texts[i * batch : (i + 1) * batch])
    latencies = []
    for i in range(warmup, warmup + batches):
        start = time.perf_counter()
        scorer.score_texts(texts[i * batch : (i + 1) * batch])
        latencies.append(time.perf_counter() - start)
    lat = np.array(latencies)
    return {
        "version": scorer.version,
        "precision": scorer.variant,
        "batch": batch,
        "batches": batches,
        "torch_threads": torch.get_num_threads(),
        "posts_per_s": round(batch * batches / float(lat.sum()), 1),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def format_result(r: dict) -> str:
    return (
        f"{r['version']} {r['precision']}  batch {r['batch']} x {r['batches']}, "
        f"{r['torch_threads']} threads: "
        f"{r['posts_per_s']} posts/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
        f"peak RSS {r['peak_rss_mb']} MB"
    )


def run(
    posts: int = 2048,
    batch_size: int = 64,
    echo: Callable[[str], object] = print,
    **kwargs: object,
) -> dict:
    """``run_bench`` sized by a number of posts, printing through ``echo`` (stream/bench.py)."""
    batches = max(1, math.ceil(posts / batch_size))
    result = run_bench(batch=batch_size, batches=batches, **kwargs)  # type: ignore[arg-type]
    echo(format_result(result))
    return result


# --- runtime comparison on real tweets ---------------------------------------------------


def _labels(outputs: Sequence[dict]) -> dict[str, list[str]]:
    """Labels per task (stance per target) for agreement counts."""
    out: dict[str, list[str]] = {"sentiment": [], "stance": [], "emotion": []}
    for o in outputs:
        out["sentiment"].append(o["sentiment"]["label"])
        out["emotion"].append(o["emotion"]["label"])
        out["stance"].extend(v["label"] for v in o["stance"].values())
    return out


def _score_all(scorer, texts: Sequence[str], batch: int) -> tuple[float, list[dict]]:
    """Posts/s and outputs of scoring ``texts`` in batches of ``batch`` (one warm-up)."""
    scorer.score_texts(probe_texts(batch, seed=1))
    outputs: list[dict] = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        outputs.extend(scorer.score_texts(texts[i : i + batch]))
    return len(texts) / (time.perf_counter() - start), outputs


def compare(
    texts: Sequence[str],
    *,
    variants: Sequence[str] = VARIANTS,
    batches: Sequence[int] = (64, 256),
    config: ScorerConfig | None = None,
    artifacts: Path | None = None,
    echo: Callable[[str], object] = print,
) -> list[dict]:
    """Posts/s per variant x batch x (sorted, unsorted), label agreement with torch fp32."""
    from models.scorer import load_scorer

    cfg = replace(config or ScorerConfig(), cache_size=0)
    reference: dict[str, list[str]] | None = None
    rows: list[dict] = []
    order = ["torch-fp32", *[v for v in variants if v != "torch-fp32"]]
    for variant in order:
        scorer = load_scorer(cfg, artifacts=artifacts, precision=variant)
        for batch in batches:
            for sort in (True, False):
                scorer.encoder.sort_by_length = sort
                rate, outputs = _score_all(scorer, texts, batch)
                labels = _labels(outputs)
                if reference is None:
                    reference = labels
                agree = {
                    task: round(float(np.mean(np.array(labels[task]) == reference[task])), 4)
                    for task in labels
                }
                row = {
                    "variant": scorer.variant,
                    "batch": batch,
                    "chunk": scorer.encoder.chunk_size,
                    "sorted": sort,
                    "posts_per_s": round(rate, 1),
                    "agreement": agree,
                }
                rows.append(row)
                echo(format_row(row))
        del scorer
    return rows


def format_row(r: dict) -> str:
    a = r["agreement"]
    return (
        f"{r['variant']:<11} batch {r['batch']:>4} chunk {r['chunk']:>3} "
        f"{'sorted  ' if r['sorted'] else 'unsorted'} {r['posts_per_s']:>8.1f} posts/s   "
        f"agreement with torch-fp32: sentiment {a['sentiment']:.4f} stance {a['stance']:.4f} "
        f"emotion {a['emotion']:.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args(argv)
    result = run_bench(
        batch=args.batch,
        batches=args.batches,
        artifacts=args.artifacts,
        threads=args.threads,
        precision=args.precision,
    )
    print(format_result(result))


if __name__ == "__main__":
    main()
