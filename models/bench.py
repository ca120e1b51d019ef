"""Model-only benchmark: posts/s, p50/p95 batch latency and peak RSS.

Scores synthetic, all-distinct tweets (so the LRU cache never helps) through the full
scorer (encoder + every head + topics), in batches like the worker's.

    python -m models.bench --batch 64 --batches 20
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

_TEXT = (
    "the debate tonight he she said economy prices border crime court judge vote poll "
    "election rally lol wow great terrible liar honest plan jobs taxes war china ukraine "
    "stream down again lag #debate @user really think why never always best worst ever "
    "america people president senator trump harris musk biden crowd laugh angry happy"
)
_WORDS = _TEXT.split()


def synthetic_posts(n: int, seed: int = 0) -> list[str]:
    """Distinct tweet-like texts of 8-40 words."""
    rng = np.random.default_rng(seed)
    return [f"{i} " + " ".join(rng.choice(_WORDS, int(rng.integers(8, 40)))) for i in range(n)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_bench(
    *,
    batch: int = 64,
    batches: int = 10,
    warmup: int = 1,
    artifacts: Path | None = None,
    threads: int | None = None,
    precision: str = "fp32",
) -> dict:
    """Load the scorer (cache off), score ``batches`` batches, return the measurements."""
    import torch

    from models.scorer import load_scorer
    from stream.config import Settings

    settings = Settings(score_cache_size=0, torch_threads=threads or 0)
    if threads:
        torch.set_num_threads(threads)
    scorer = load_scorer(settings, artifacts=artifacts, precision=precision)
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
        "precision": precision,
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
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
