"""The live-event simulator: posts from a scripted audience, with known ground truth.

Everything event-specific (volume curve, cohort mix, bios, phrase templates, how each cohort
feels about each target in each moment) lives in the event's YAML file; this module only
turns that script into a deterministic stream. The same ``seed`` and ``run_id`` always give
the same records, so an accuracy run can be repeated exactly.

How a post is made: pick the minute's moment and a cohort, sample the cohort's sentiment and
stance for that moment, weight the phrase groups (``"pos T+ H-"``: positive, favours Trump,
against Harris) by how likely their labels are under that script, take a template from the
chosen group, fill its slots and roughen it (openers, hashtags, emoji, typos). The truth is
the chosen group's labels, so the text always says what its truth says.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import math
import random
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from stream.events import Event, Moment
from stream.schema import MAX_FOLLOWERS, Author, Post
from stream.sources import RecordKind, SourceRecord

SimulatedRecord = SourceRecord

SENTIMENT_CODES = {"pos": "positive", "neg": "negative", "neu": "neutral"}
STANCE_CODES = {"+": "favor", "-": "against", "0": "none"}
_SLOT = re.compile(r"\{(\w+)\}")


# --------------------------------------------------------------------------- the script model


class CohortScript(BaseModel):
    """How one cohort reacts in one moment (or, as background, in any moment)."""

    sentiment: float = Field(0.0, ge=-1, le=1, description="Mean sentiment, -1..1.")
    neutral: float | None = Field(None, ge=0, le=1, description="Share of neutral posts.")
    stance: dict[str, float | dict[str, float]] = Field(
        default_factory=dict,
        description="Per target (code or name): a mean -1..1 or favor/against/none shares.",
    )
    weight: float = Field(1.0, ge=0, description="Activity of this cohort relative to its mix.")
    topic: str | None = None
    phrases: dict[str, list[str]] = Field(default_factory=dict)


class MomentScript(BaseModel):
    volume: float = Field(1.0, ge=0, description="Multiplies the base posts/min curve.")
    on_topic: float | None = Field(None, ge=0, le=1)
    cohorts: dict[str, CohortScript] = Field(default_factory=dict)


class FollowerSpec(BaseModel):
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)


class CohortSpec(BaseModel):
    share: float = Field(ge=0)
    authors: int = Field(ge=1)
    followers: FollowerSpec
    bios: list[str] = Field(min_length=1)
    silent_bio_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of authors whose bio (from the event's silent_bios) says nothing "
        "political: their cohort shows only in what they post, as for most real accounts.",
    )
    handle_words: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    hashtag_rate: float = Field(0.3, ge=0, le=1)
    fillers: dict[str, list[str]] = Field(default_factory=dict)


class SimulationSpec(BaseModel):
    """The ``simulation:`` block of an event file."""

    rate_curve: list[tuple[float, float]] = Field(
        min_length=2, description="(minute, posts/min) points, linearly interpolated."
    )
    cohorts: dict[str, CohortSpec]
    target_codes: dict[str, str]
    background: dict[str, CohortScript] = Field(default_factory=dict)
    background_topic: str = "other"
    on_topic: float = Field(0.85, ge=0, le=1)
    neutral_share: float = Field(0.25, ge=0, le=1)
    stance_none_share: float = Field(0.4, ge=0, le=1)
    author_activity_skew: float = Field(0.9, ge=0, description="Zipf exponent of who posts.")
    fillers: dict[str, list[str]] = Field(default_factory=dict)
    silent_bios: list[str] = Field(default_factory=list)
    handle_words: list[str] = Field(min_length=2)
    handle_patterns: list[str] = Field(default_factory=lambda: ["{a}{b}", "{a}_{b}{n}"])
    openers: list[str] = Field(default_factory=list)
    opener_rate: float = Field(0.15, ge=0, le=1)
    emoji: dict[str, list[str]] = Field(default_factory=dict)
    emoji_rate: float = Field(0.3, ge=0, le=1)
    typo_rate: float = Field(0.1, ge=0, le=1)
    lowercase_rate: float = Field(0.1, ge=0, le=1)
    repost_share: float = Field(0.1, ge=0, lt=1)
    duplicate_share: float = Field(0.01, ge=0, lt=1)
    malformed_share: float = Field(0.02, ge=0, lt=1)
    recent_window: int = Field(300, ge=1, description="How far back reposts and dups reach.")

    @field_validator("rate_curve")
    @classmethod
    def _sorted(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        minutes = [m for m, _ in value]
        if minutes != sorted(minutes):
            raise ValueError("rate_curve minutes must increase")
        return value

    @model_validator(mode="after")
    def _shares(self) -> SimulationSpec:
        if sum(c.share for c in self.cohorts.values()) <= 0:
            raise ValueError("cohort shares must add up to more than 0")
        silent = [n for n, c in self.cohorts.items() if c.silent_bio_share > 0]
        if silent and not self.silent_bios:
            raise ValueError(f"cohorts {silent} have a silent_bio_share but silent_bios is empty")
        return self

    @property
    def end_min(self) -> float:
        return self.rate_curve[-1][0]


def simulation_spec(event: Event) -> SimulationSpec:
    return SimulationSpec.model_validate(event.simulation)


def moment_script(moment: Moment) -> MomentScript:
    return MomentScript.model_validate(moment.script)


def parse_group(key: str, target_codes: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``"pos T+ H-"`` -> ``("positive", {"Donald Trump": "favor", "Kamala Harris": "against"})``.

    Targets a group does not name get stance ``none``.
    """
    parts = key.split()
    if not parts or parts[0] not in SENTIMENT_CODES:
        raise ValueError(f"phrase group {key!r} must start with one of {list(SENTIMENT_CODES)}")
    stance = {target: "none" for target in target_codes.values()}
    for part in parts[1:]:
        code, sign = part[:-1], part[-1]
        if code not in target_codes or sign not in STANCE_CODES:
            raise ValueError(f"phrase group {key!r}: bad stance {part!r}")
        stance[target_codes[code]] = STANCE_CODES[sign]
    return SENTIMENT_CODES[parts[0]], stance


def validate_event_script(event: Event) -> list[str]:
    """Every problem in an event's simulation script (empty when it is usable).

    Checked up front so that a typo in the YAML fails the tests, not a live demo.
    """
    problems: list[str] = []
    try:
        spec = simulation_spec(event)
    except ValueError as exc:
        return [f"simulation: {exc}"]
    topics = set(event.topic_ids())
    if spec.background_topic not in topics:
        problems.append(f"background_topic {spec.background_topic!r} is not a topic")
    for code, target in spec.target_codes.items():
        if target not in event.targets:
            problems.append(f"target code {code}: {target!r} is not an event target")
    scripts: list[tuple[str, str, CohortScript]] = [
        ("background", c, s) for c, s in spec.background.items()
    ]
    for moment in event.moments:
        if moment.topic is not None and moment.topic not in topics:
            problems.append(f"moment {moment.id}: topic {moment.topic!r} is not a topic")
        try:
            ms = moment_script(moment)
        except ValueError as exc:
            problems.append(f"moment {moment.id}: {exc}")
            continue
        scripts.extend((moment.id, c, s) for c, s in ms.cohorts.items())
    for cohort in spec.cohorts:
        if cohort not in spec.background:
            problems.append(f"cohort {cohort} has no background script")
    for where, cohort, script in scripts:
        if cohort not in spec.cohorts:
            problems.append(f"{where}: unknown cohort {cohort!r}")
            continue
        if script.topic is not None and script.topic not in topics:
            problems.append(f"{where}/{cohort}: topic {script.topic!r} is not a topic")
        for target in script.stance:
            if target not in spec.target_codes and target not in event.targets:
                problems.append(f"{where}/{cohort}: stance for unknown target {target!r}")
        known = set(spec.fillers) | set(spec.cohorts[cohort].fillers)
        for group, templates in script.phrases.items():
            try:
                parse_group(group, spec.target_codes)
            except ValueError as exc:
                problems.append(f"{where}/{cohort}: {exc}")
            for template in templates:
                missing = set(_SLOT.findall(template)) - known
                if missing:
                    problems.append(f"{where}/{cohort}: unknown slots {sorted(missing)}")
    return problems


# --------------------------------------------------------------------------- sampling helpers


def _label_probs(mean: float, neutral: float, labels: tuple[str, str, str]) -> dict[str, float]:
    """Turn a mean in -1..1 and a neutral share into probabilities of (pos, neg, neutral)."""
    pos, neg, neu = labels
    return {pos: (1 - neutral) * (1 + mean) / 2, neg: (1 - neutral) * (1 - mean) / 2, neu: neutral}


def _stance_probs(value: float | dict[str, float], none_share: float) -> dict[str, float]:
    if isinstance(value, dict):
        total = sum(value.values()) or 1.0
        return {k: value.get(k, 0.0) / total for k in ("favor", "against", "none")}
    return _label_probs(value, none_share, ("favor", "against", "none"))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:  # normal approximation; exact enough for volume and much faster
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _interp(points: list[tuple[float, float]], x: float) -> float:
    xs = [p[0] for p in points]
    if x <= xs[0]:
        return points[0][1]
    if x >= xs[-1]:
        return 0.0  # the curve's last point ends the stream
    i = bisect.bisect_right(xs, x)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True, slots=True)
class _Group:
    """Templates that share one set of labels (the truth of every post made from them)."""

    sentiment: str
    stance: dict[str, str]
    templates: list[str]
    topic: str


class _Reaction:
    """One cohort's script in one moment, compiled into weighted phrase groups."""

    def __init__(
        self, script: CohortScript, topic: str, spec: SimulationSpec, targets: list[str]
    ) -> None:
        neutral = script.neutral if script.neutral is not None else spec.neutral_share
        sentiment = _label_probs(script.sentiment, neutral, ("positive", "negative", "neutral"))
        stance: dict[str, dict[str, float]] = {}
        for target in targets:
            value: float | dict[str, float] = 0.0
            for name, v in script.stance.items():
                if spec.target_codes.get(name, name) == target:
                    value = v
            stance[target] = _stance_probs(value, spec.stance_none_share)
        self.groups: list[_Group] = []
        weights: list[float] = []
        for key, templates in script.phrases.items():
            if not templates:
                continue
            label, group_stance = parse_group(key, spec.target_codes)
            weight = sentiment[label]
            for target, probs in stance.items():
                weight *= probs[group_stance.get(target, "none")]
            self.groups.append(_Group(label, group_stance, templates, script.topic or topic))
            weights.append(weight + 1e-6)  # keep every group reachable
        self.cum_weights = list(accumulate(weights))

    def pick(self, rng: random.Random) -> _Group:
        return rng.choices(self.groups, cum_weights=self.cum_weights)[0]


# --------------------------------------------------------------------------- the simulator


class _Simulator:
    def __init__(self, event: Event, run_id: str, seed: int) -> None:
        self.event = event
        self.run_id = run_id
        self.spec = simulation_spec(event)
        self.rng = random.Random(f"{seed}")
        self.cohorts = list(self.spec.cohorts)
        digest = hashlib.sha1(f"{run_id}|{seed}".encode()).hexdigest()[:8]
        self.id_prefix = f"sim-{digest}-"
        self.counter = 0
        self.handles: set[str] = set()  # unique across cohorts, like real handles
        self.authors = {c: self._make_authors(c) for c in self.cohorts}
        skew = self.spec.author_activity_skew
        self.author_cum = {
            c: list(accumulate(1 / (i + 1) ** skew for i in range(len(a))))
            for c, a in self.authors.items()
        }
        self.background = {
            c: _Reaction(s, self.spec.background_topic, self.spec, event.targets)
            for c, s in self.spec.background.items()
        }
        self.reactions: dict[str, dict[str, _Reaction]] = {}
        self.moment_scripts: dict[str, MomentScript] = {}
        for moment in event.moments:
            ms = moment_script(moment)
            self.moment_scripts[moment.id] = ms
            topic = moment.topic or self.spec.background_topic
            self.reactions[moment.id] = {
                c: _Reaction(s, topic, self.spec, event.targets)
                for c, s in ms.cohorts.items()
                if s.phrases
            }
        self.names = {
            word for values in self.spec.fillers.values() for v in values for word in v.split()
        } | {"I", "I'm", "I'd", "I'll"}
        self.recent: dict[str, deque[Post]] = {
            c: deque(maxlen=self.spec.recent_window) for c in self.cohorts
        }
        self.recent_any: deque[Post] = deque(maxlen=self.spec.recent_window)

    # ---- authors

    def _fill(self, template: str, cohort: str) -> str:
        own = self.spec.cohorts[cohort].fillers

        def one(match: re.Match[str]) -> str:
            options = own.get(match.group(1)) or self.spec.fillers.get(match.group(1))
            return self.rng.choice(options) if options else match.group(0)

        return _SLOT.sub(one, template)

    def _make_authors(self, cohort: str) -> list[Author]:
        spec = self.spec.cohorts[cohort]
        words = spec.handle_words + self.spec.handle_words
        authors, seen = [], self.handles
        for i in range(spec.authors):
            pattern = self.rng.choice(self.spec.handle_patterns)
            a, b = self.rng.sample(words, 2)
            handle = pattern.format(a=a, b=b, n=self.rng.randint(1, 99))[:15]
            while handle in seen:
                handle = f"{handle[:12]}{self.rng.randint(100, 999)}"
            seen.add(handle)
            followers = int(
                spec.followers.median * math.exp(self.rng.gauss(0, spec.followers.sigma))
            )
            uid = hashlib.sha1(f"{cohort}|{i}|{self.rng.random()}".encode()).hexdigest()[:12]
            silent = self.rng.random() < spec.silent_bio_share
            bios = self.spec.silent_bios if silent else spec.bios
            authors.append(
                Author(
                    id=f"u{int(uid, 16) % 10**15}",
                    handle=handle,
                    bio=self._fill(self.rng.choice(bios), cohort),
                    followers=min(followers, MAX_FOLLOWERS),
                )
            )
        return authors

    def _author(self, cohort: str) -> Author:
        return self.rng.choices(self.authors[cohort], cum_weights=self.author_cum[cohort])[0]

    # ---- volume

    def rate(self, minute: float) -> tuple[float, Moment | None]:
        moment = self.event.active_moment(minute)
        volume = self.moment_scripts[moment.id].volume if moment else 1.0
        return _interp(self.spec.rate_curve, minute) * volume, moment

    def cohort_weights(self, moment: Moment | None) -> list[float]:
        scripts = self.moment_scripts[moment.id].cohorts if moment else {}
        return list(
            accumulate(
                self.spec.cohorts[c].share * (scripts[c].weight if c in scripts else 1.0)
                for c in self.cohorts
            )
        )

    # ---- text

    def _roughen(self, text: str, cohort: str, sentiment: str) -> str:
        rng, spec = self.rng, self.spec
        if spec.openers and rng.random() < spec.opener_rate:
            opener = rng.choice(spec.openers)
            first = text.split(" ", 1)[0]
            if opener[-1] not in ".:!?" and first.isalpha() and first not in self.names:
                text = text[0].lower() + text[1:]  # "ngl the border...", not "ngl The border"
            text = f"{opener} {text}"
        if rng.random() < spec.typo_rate:
            text = _typo(rng, text)
        if rng.random() < spec.lowercase_rate:
            text = text.lower()
        emoji = spec.emoji.get(sentiment)
        if emoji and rng.random() < spec.emoji_rate:
            text = f"{text} {''.join(rng.choices(emoji, k=rng.randint(1, 3)))}"
        tags = spec.cohorts[cohort].hashtags
        if tags and rng.random() < spec.cohorts[cohort].hashtag_rate:
            text = f"{text} {' '.join(rng.sample(tags, min(len(tags), rng.randint(1, 2))))}"
        return text

    def original(self, offset_s: float, moment: Moment | None, cohort: str) -> Post:
        reaction = None
        if moment is not None:
            on_topic = self.moment_scripts[moment.id].on_topic
            if self.rng.random() < (self.spec.on_topic if on_topic is None else on_topic):
                reaction = self.reactions[moment.id].get(cohort)
        reaction = reaction or self.background[cohort]
        group = reaction.pick(self.rng)
        text = self._fill(self.rng.choice(group.templates), cohort)
        text = text[0].upper() + text[1:]  # "{trump} said" -> "The former president said"
        text = self._roughen(text, cohort, group.sentiment)
        truth = {
            "cohort": cohort,
            "sentiment": group.sentiment,
            "stance": dict(group.stance),
            "topic": group.topic,
            "moment_id": moment.id if moment else None,
        }
        return self._post(offset_s, self._author(cohort), text, truth)

    def repost(self, offset_s: float, moment: Moment | None, cohort: str) -> Post | None:
        pool = self.recent[cohort] or self.recent_any
        if not pool:
            return None
        source = self.rng.choice(pool)
        author = self._author(cohort)
        truth = {**copy.deepcopy(source.truth or {}), "cohort": cohort}
        truth["moment_id"] = moment.id if moment else None
        text = f"RT @{source.author.handle}: {source.text}"
        return self._post(offset_s, author, text, truth, repost_of=source.id)

    def _post(
        self,
        offset_s: float,
        author: Author,
        text: str,
        truth: dict[str, Any],
        repost_of: str | None = None,
    ) -> Post:
        self.counter += 1
        return Post(
            id=f"{self.id_prefix}{self.counter:07d}",
            run_id=self.run_id,
            event_id=self.event.id,
            event_time=self.event.start + timedelta(seconds=offset_s),
            author=author,
            text=text,
            repost_of=repost_of,
            source="simulator",
            truth=truth,
        )

    def remember(self, post: Post, cohort: str) -> None:
        if post.repost_of is None:  # people repost the original, not "RT @a: RT @b: ..."
            self.recent[cohort].append(post)
            self.recent_any.append(post)


_MALFORMED_MODES = (
    "bad_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "negative_followers",
    "ancient_time",
    "empty_text",
    "blank_text",
)


def corrupt(post: Post, rng: random.Random) -> tuple[bytes, str]:
    """Spoil a valid post in one of the ways real feeds do; returns (bytes, reason)."""
    mode = rng.choice(_MALFORMED_MODES)
    data = json.loads(post.to_bytes())
    data.pop("truth", None)
    if mode == "bad_json":
        text = json.dumps(data)
        return text[: rng.randint(1, len(text) - 1)].encode(), mode
    if mode == "not_object":
        return json.dumps([data]).encode(), mode
    if mode == "missing_field":
        field = rng.choice(["id", "text", "author", "event_time", "run_id", "event_id"])
        data.pop(field)
        mode = f"missing_{field}"
    elif mode == "wrong_type":
        field, value = rng.choice(
            [
                ("text", ["a", "list"]),
                ("author", data["author"]["handle"]),
                ("event_time", "around nine-ish"),
                ("followers", "lots"),
            ]
        )
        if field == "followers":
            data["author"]["followers"] = value
        else:
            data[field] = value
        mode = f"wrong_type_{field}"
    elif mode == "negative_followers":
        data["author"]["followers"] = -5
    elif mode == "ancient_time":
        data["event_time"] = "1970-01-01T00:00:00Z"
    elif mode == "empty_text":
        data["text"] = ""
    elif mode == "blank_text":
        data["text"] = "   "
    return json.dumps(data).encode(), mode


def _typo(rng: random.Random, text: str) -> str:
    """One keyboard slip in a lowercase word (names, handles and tags stay intact)."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha() and w.islower()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif kind == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def simulate(
    event: Event,
    run_id: str,
    seed: int = 0,
    speed: float = 60.0,
    max_posts: int | None = None,
    start_min: float = 0.0,
    end_min: float | None = None,
    rate_scale: float = 1.0,
) -> Iterator[SimulatedRecord]:
    """Yield the records of one simulated run, in event-time order.

    ``speed`` is event seconds per wall second (60: an hour of event in a minute); each
    record's ``delay_s`` is the wall-clock pause since the previous record (0 when ``speed``
    is 0 or less, i.e. as fast as possible). ``max_posts`` caps the number of records,
    ``start_min``/``end_min`` cut a window of event minutes, ``rate_scale`` multiplies the
    volume for load tests. Deterministic for a given (event, run_id, seed).
    """
    sim = _Simulator(event, run_id, seed)
    spec, rng = sim.spec, sim.rng
    stop = spec.end_min if end_min is None else min(end_min, spec.end_min)
    emitted = 0
    last_s = start_min * 60
    minute = math.floor(start_min)

    def delay(offset_s: float) -> float:
        nonlocal last_s
        gap = max(0.0, offset_s - last_s)
        last_s = max(last_s, offset_s)
        return gap / speed if speed > 0 else 0.0

    while minute < stop:
        rate, moment = sim.rate(minute + 0.5)
        cohort_cum = sim.cohort_weights(moment)
        count = _poisson(rng, rate * rate_scale)
        offsets = sorted(minute * 60 + rng.random() * 60 for _ in range(count))
        for offset in offsets:
            if not start_min * 60 <= offset < stop * 60:
                continue
            cohort = rng.choices(sim.cohorts, cum_weights=cohort_cum)[0]
            post = None
            kind: RecordKind = "original"
            if rng.random() < spec.repost_share:
                post = sim.repost(offset, moment, cohort)
                kind = "repost"
            if post is None:
                post = sim.original(offset, moment, cohort)
                kind = "original"
            if rng.random() < spec.malformed_share:
                raw, reason = corrupt(post, rng)
                record = SourceRecord(
                    delay(offset), "malformed", raw=raw, reason=reason, key_hint=post.author.id
                )
            else:
                sim.remember(post, cohort)
                record = SourceRecord(delay(offset), kind, post=post)
            yield record
            emitted += 1
            if max_posts is not None and emitted >= max_posts:
                return
            if record.post is not None and rng.random() < spec.duplicate_share:
                yield SourceRecord(0.0, "duplicate", post=record.post)
                emitted += 1
                if max_posts is not None and emitted >= max_posts:
                    return
        minute += 1


__all__ = [
    "CohortScript",
    "MomentScript",
    "SimulatedRecord",
    "SimulationSpec",
    "corrupt",
    "moment_script",
    "parse_group",
    "simulate",
    "simulation_spec",
    "validate_event_script",
]
