"""Altair charts of the dashboard (pure: frames in, charts out, so they can be tested alone).

Times are shown as UTC wall-clock: tz-aware minutes become naive UTC before charting, so
Vega-Lite (which would convert to the viewer's zone) shows the event's own clock.
"""

from __future__ import annotations

from datetime import datetime

import altair as alt
import pandas as pd

# Cohort presentation in one place: legend order, colour, line weight, label.
COHORT_ORDER = ["moderate", "lean_left", "lean_right", "unknown"]
COHORT_COLORS = ["#6a1b9a", "#1f77b4", "#d62728", "#9e9e9e"]
COHORT_WIDTHS = [4.5, 1.8, 1.8, 1.2]
COHORT_LABELS = {
    "moderate": "moderate / undecided",
    "lean_left": "lean left",
    "lean_right": "lean right",
    "unknown": "unknown",
}
LOW_N_COLOR = "#c8c8c8"
MOMENT_COLOR = "#555555"
ANNOTATION_COLOR = "#ef6c00"
PLAYHEAD_COLOR = "#000000"
TIME_FORMAT = "%H:%M"


def utc_naive(values: pd.Series) -> pd.Series:
    """Tz-aware timestamps -> naive UTC (see the module docstring)."""
    values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _cohort_color(legend: bool = True, shown: list[str] | None = None) -> alt.Color:
    return alt.Color(
        "cohort:N",
        scale=alt.Scale(domain=COHORT_ORDER, range=COHORT_COLORS),
        sort=COHORT_ORDER,
        legend=alt.Legend(
            title="cohort",
            orient="top",
            symbolType="stroke",
            symbolOpacity=1,
            symbolStrokeWidth=4,
            values=shown,
            labelExpr=" : ".join(f"datum.value == '{k}' ? '{v}'" for k, v in COHORT_LABELS.items())
            + " : datum.value",
        )
        if legend
        else None,
    )


Domain = tuple[datetime, datetime] | None  # x range to show (naive UTC); None: the data's


def _dt(value: datetime) -> alt.DateTime:
    v = pd.Timestamp(value)
    return alt.DateTime(
        year=v.year, month=v.month, date=v.day, hours=v.hour, minutes=v.minute, seconds=v.second
    )


def _x(title: str = "minute (UTC)", domain: Domain = None) -> alt.X:
    scale = alt.Scale(domain=[_dt(domain[0]), _dt(domain[1])]) if domain else alt.Undefined
    return alt.X(
        "minute:T",
        title=title,
        scale=scale,
        axis=alt.Axis(format=TIME_FORMAT, labelOverlap="greedy"),
    )


def thin_labels(times: pd.Series, min_gap: pd.Timedelta) -> pd.Series:
    """True for labels at least ``min_gap`` after the previous kept one (no overprinting)."""
    keep, last = [], None
    for t in times:
        ok = last is None or t - last >= min_gap
        keep.append(ok)
        last = t if ok else last
    return pd.Series(keep, index=times.index)


def marker_layers(
    markers: pd.DataFrame | None,
    playhead: datetime | None = None,
    labels: bool = True,
    domain: Domain = None,
) -> list[alt.Chart]:
    """Vertical rules with labels for moments (grey), annotations (orange) and the playhead."""
    layers: list[alt.Chart] = []
    if markers is not None and not markers.empty:
        data = markers.assign(
            at_time=utc_naive(markers["at_time"]),
            short=markers["label"].astype(str).str.slice(0, 38),
        )[["kind", "at_time", "label", "short", "author"]].astype({"author": "string"})
        data = data.sort_values("at_time")
        span = (
            pd.Timestamp(domain[1]) - pd.Timestamp(domain[0])
            if domain
            else data["at_time"].max() - data["at_time"].min()
        )
        data["labelled"] = thin_labels(data["at_time"], max(span / 45, pd.Timedelta(minutes=1)))
        # Fixed colours per layer (a shared colour scale would merge with the cohorts').
        for kind, color in (("moment", MOMENT_COLOR), ("annotation", ANNOTATION_COLOR)):
            subset = data[data["kind"] == kind]
            if subset.empty:
                continue
            base = alt.Chart(subset)
            layers.append(
                base.mark_rule(strokeDash=[4, 3], strokeWidth=1.2, color=color).encode(
                    x="at_time:T",
                    tooltip=[
                        alt.Tooltip("kind:N"),
                        alt.Tooltip("at_time:T", format=TIME_FORMAT, title="at (UTC)"),
                        alt.Tooltip("label:N"),
                        alt.Tooltip("author:N"),
                    ],
                )
            )
            if not labels or not subset["labelled"].any():
                continue
            layers.append(
                alt.Chart(subset[subset["labelled"]])
                .mark_text(
                    angle=270,
                    align="right",
                    baseline="bottom",
                    dx=-4,
                    dy=-2,
                    fontSize=10,
                    color=color,
                )
                .encode(x="at_time:T", y=alt.value(0), text="short:N")
            )
    if playhead is not None:
        ph = pd.DataFrame({"at_time": utc_naive(pd.Series([pd.Timestamp(playhead)]))})
        layers.append(
            alt.Chart(ph).mark_rule(color=PLAYHEAD_COLOR, strokeWidth=2).encode(x="at_time:T")
        )
    return layers


def dial_chart(
    lines: pd.DataFrame,
    markers: pd.DataFrame | None = None,
    *,
    value: str = "net_sentiment",
    title: str = "Net sentiment by cohort",
    y_title: str = "net sentiment (positive - negative)",
    playhead: datetime | None = None,
    height: int = 460,  # total, including legend and axes
    selectable: bool = True,
    labels: bool = True,
    legend: bool = True,
    domain: Domain = None,
) -> alt.LayerChart:
    """The dial test: a line per cohort with its 95% band; grey points have too few posts."""
    data = lines.assign(
        minute=utc_naive(lines["minute"]),
        low_n=lines["low_n"].astype(bool),
        cohort_label=lines["cohort"].map(COHORT_LABELS).fillna(lines["cohort"]),
    )
    keep = ["minute", "cohort", "cohort_label", value, "ci_low", "ci_high", "n", "low_n"]
    data = data[keep]
    shown = [c for c in COHORT_ORDER if c in set(data["cohort"])]
    color = _cohort_color(legend, shown)
    y_scale = alt.Scale(domain=[-1, 1], clamp=True)
    base = alt.Chart(data).encode(x=_x(domain=domain))
    band = (
        base.mark_area(opacity=0.13)
        .encode(
            y=alt.Y("ci_low:Q", scale=y_scale, title=y_title),
            y2="ci_high:Q",
            color=color,
        )
        .transform_filter("!datum.low_n")
    )
    line = (
        base.mark_line(interpolate="monotone")
        .encode(
            y=alt.Y(f"{value}:Q", scale=y_scale),
            color=color,
            strokeWidth=alt.StrokeWidth(
                "cohort:N", scale=alt.Scale(domain=COHORT_ORDER, range=COHORT_WIDTHS), legend=None
            ),
            order=alt.Order("minute:T"),
        )
        .transform_filter("!datum.low_n")
    )
    tooltip = [
        alt.Tooltip("minute:T", format=TIME_FORMAT, title="minute (UTC)"),
        alt.Tooltip("cohort_label:N", title="cohort"),
        alt.Tooltip(f"{value}:Q", format="+.2f", title=value.replace("_", " ")),
        alt.Tooltip("n:Q", title="posts in point"),
        alt.Tooltip("ci_low:Q", format="+.2f", title="95% low"),
        alt.Tooltip("ci_high:Q", format="+.2f", title="95% high"),
        alt.Tooltip("low_n:N", title="too few posts"),
    ]
    points = base.mark_circle(size=26, opacity=0.9).encode(
        y=alt.Y(f"{value}:Q", scale=y_scale),
        color=alt.condition("datum.low_n", alt.value(LOW_N_COLOR), color),
        tooltip=tooltip,
    )
    if selectable:
        points = points.add_params(
            alt.selection_point(name="pick", fields=["minute"], on="click", nearest=True)
        )
    zero = (
        alt.Chart(pd.DataFrame({"y": [0.0]}))
        .mark_rule(color="#999", strokeWidth=0.7)
        .encode(y="y:Q")
    )
    return alt.layer(
        zero, band, line, points, *marker_layers(markers, playhead, labels, domain)
    ).properties(title=title, height=height)


def stance_chart(
    stances: pd.DataFrame,
    target: str,
    markers: pd.DataFrame | None = None,
    playhead: datetime | None = None,
    domain: Domain = None,
) -> alt.LayerChart:
    """Net stance (favor - against) toward one target, same encoding as the dial."""
    data = stances[stances["target"] == target]
    return dial_chart(
        data,
        markers,
        value="net_stance",
        title="",
        y_title="net stance (favor - against)",
        playhead=playhead,
        height=300,
        selectable=False,
        labels=False,  # too narrow for labels: the rules line up with the dial's above
        legend=False,  # the dial above carries it
        domain=domain,
    )


def volume_chart(
    volume: pd.DataFrame, playhead: datetime | None = None, domain: Domain = None
) -> alt.LayerChart:
    """Posts per minute, stacked by cohort (moderate at the bottom)."""
    data = volume.assign(
        minute=utc_naive(volume["minute"]),
        order=volume["cohort"].map({c: i for i, c in enumerate(COHORT_ORDER)}).fillna(9),
    )[["minute", "cohort", "n", "order"]]
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=_x(domain=domain),
            y=alt.Y("sum(n):Q", title="posts / minute"),
            color=_cohort_color(legend=False),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("minute:T", format=TIME_FORMAT, title="minute (UTC)"),
                alt.Tooltip("cohort:N"),
                alt.Tooltip("n:Q", title="posts"),
            ],
        )
    )
    return alt.layer(bars, *marker_layers(None, playhead, domain=domain)).properties(
        title="Posts per minute by cohort", height=240
    )


def ingest_chart(ingest: pd.DataFrame) -> alt.Chart:
    """Posts received per minute (health panel)."""
    data = ingest.assign(minute=utc_naive(ingest["minute"]))
    return (
        alt.Chart(data)
        .mark_bar(color="#455a64")
        .encode(
            x=_x("received (UTC)"),
            y=alt.Y("posts:Q", title="posts received"),
            tooltip=[alt.Tooltip("minute:T", format=TIME_FORMAT), "posts:Q"],
        )
        .properties(height=120)
    )
