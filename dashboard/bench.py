"""Benchmark the dashboard's page queries on a large fixture database.

    python -m dashboard.bench --minutes 180 --pps 300      # ~3.2M posts, built once

The database is built by ``tests/fixtures_db.py`` (DuckDB-side generation) into
``$SWINGDIAL_HOME/bench/`` and reused while it exists. Every query of one page render is
timed (median of ``--repeats``) through two read paths: one open read-only connection, and
``QueryClient`` in direct mode (a fresh read-only open per query, as the dashboard reads
when no sink serves Flight). Spike detection and drivers are timed as well.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb
import pandas as pd

from dashboard import queries, spikes
from stream.config import Settings, get_settings
from stream.query import QueryClient


def _fixture_builder() -> Callable[..., Path]:
    """``build_test_db`` from the checkout's tests (a dev tool: needs the source tree)."""
    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures_db.py"
    spec = importlib.util.spec_from_file_location("swingdial_fixtures_db", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}: run from a source checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while loading
    spec.loader.exec_module(module)
    return module.build_test_db


def bench_db(settings: Settings, minutes: int, pps: float, rebuild: bool = False) -> Path:
    """The cached benchmark database (built on first use)."""
    path = settings.home / "bench" / f"views-{minutes}m-{pps:g}pps.duckdb"
    if rebuild or not path.exists():
        t0 = time.perf_counter()
        print(f"building {path} ({minutes} min x {pps:g} posts/s) ...", flush=True)
        _fixture_builder()(path.with_suffix(".tmp"), minutes=minutes, posts_per_second=pps)
        path.with_suffix(".tmp").rename(path)
        print(f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(minutes: int, pps: float, repeats: int, rebuild: bool) -> pd.DataFrame:
    settings = get_settings()
    path = bench_db(settings, minutes, pps, rebuild)
    con = duckdb.connect(str(path), read_only=True)
    conn_query = queries.from_connection(con)
    direct = QueryClient(settings.replace(**{"duckdb_path": path}), mode="direct")
    run_id = queries.runs(conn_query).sort_values("posts").iloc[-1]["run_id"]
    posts = int(queries.runs(conn_query)["posts"].sum())
    first = queries.runs(conn_query).set_index("run_id").loc[run_id, "first_minute"]
    whole = queries.Filters(
        run_id,
        start=first,
        end=first + pd.Timedelta(minutes=minutes - 1),
        cohorts=("moderate", "lean_left", "lean_right"),
    )
    last_hour = whole.with_(start=whole.end - pd.Timedelta(minutes=59))
    min_n = settings.dashboard.min_posts_per_point
    rows = []
    for label, f in (("whole run", whole), ("last 60 min", last_hour)):
        page = queries.page_queries(f, min_n)
        by_con = queries.time_queries(conn_query, page, repeats)
        by_client = queries.time_queries(direct.sql, page, repeats)
        for name in page:
            rows.append(
                {
                    "window": label,
                    "query": name,
                    "connection_ms": by_con[name] * 1000,
                    "client_direct_ms": by_client[name] * 1000,
                }
            )
        lines = queries.cohort_lines(conn_query, f, min_n)
        found = spikes.detect(lines)
        rows.append(
            {
                "window": label,
                "query": "spikes.detect (pandas)",
                "connection_ms": _median(partial(spikes.detect, lines), repeats) * 1000,
                "client_direct_ms": float("nan"),
            }
        )
        if not found.empty:
            top = found.iloc[0]

            def drivers(top: pd.Series = top, f: queries.Filters = f) -> None:
                scope = f.with_(start=None, end=None)
                window = queries.posts(
                    conn_query, scope, top["peak_minute"], limit=2000, sample=True
                )
                before = scope.with_(
                    start=top["minute"] - pd.Timedelta(minutes=15),
                    end=top["minute"] - pd.Timedelta(minutes=1),
                )
                base = queries.posts(conn_query, before, limit=4000, sample=True)
                spikes.drivers(window, base, kind=top["kind"])

            rows.append(
                {
                    "window": label,
                    "query": "drivers of top spike (2 queries + terms)",
                    "connection_ms": _median(drivers, repeats) * 1000,
                    "client_direct_ms": float("nan"),
                }
            )
    con.close()
    table = pd.DataFrame(rows)
    print(
        f"\n{posts:,} scored posts in {path} ({path.stat().st_size / 1e9:.2f} GB); "
        f"run {run_id}; median of {repeats}\n"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=180)
    parser.add_argument("--pps", type=float, default=300, help="posts per second")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the database again")
    args = parser.parse_args()
    run(args.minutes, args.pps, args.repeats, args.rebuild)


if __name__ == "__main__":
    main()
