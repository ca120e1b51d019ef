"""Model checks against the simulator's ground truth (topic, sentiment, stance, cohorts).

They live on the stream side because they drive the simulator (``stream/sources``); the
model package knows nothing of it. ``swingdial models eval --event ID`` runs them.
"""

from __future__ import annotations

import random

import numpy as np
from sklearn.metrics import recall_score

from models.evaluate import f1avg
from models.scorer import event_topics
from stream.events import load_event
from stream.sources.simulator import simulate


def simulated_event_check(scorer, event_id: str, n: int = 1000, seed: int = 7) -> dict:
    """Agreement with the simulator's ground truth on ``n`` distinct original posts.

    The simulator's templates are written by the project, so this measures what the demo
    dashboard will show, not real-world accuracy.
    """

    event = load_event(event_id)
    truth: dict[str, dict] = {}
    for rec in simulate(event, "model-eval", seed=seed, speed=0):
        post = rec.post
        if post is not None and rec.kind == "original" and post.truth:
            truth.setdefault(post.text, post.truth)
    rows = list(truth.items())
    random.Random(seed).shuffle(rows)
    rows = rows[:n]
    scorer.set_topics(event_topics(event.topics))
    outs = scorer.score_texts([t for t, _ in rows])
    gold_s = [tr["sentiment"] for _, tr in rows]
    pred_s = [o["sentiment"]["label"] for o in outs]
    result: dict = {
        "event": event_id,
        "n": len(rows),
        "sentiment_macro_recall": round(float(recall_score(gold_s, pred_s, average="macro")), 4),
        "topic_accuracy": round(
            float(
                np.mean(
                    [
                        o["topic"]["label"] == tr["topic"]
                        for o, (_, tr) in zip(outs, rows, strict=True)
                    ]
                )
            ),
            4,
        ),
        "stance": {},
    }
    for target in event.targets:
        gold = [tr["stance"].get(target, "none") for _, tr in rows]
        pred = [o["stance"][target]["label"] for o in outs]
        result["stance"][target] = {
            "f1avg": round(f1avg(gold, pred), 4),
            "accuracy": round(float(np.mean(np.array(gold) == np.array(pred))), 4),
            "gold_favor_against": sum(g != "none" for g in gold),
        }
    return result


def simulated_cohort_check(
    scorer, event_id: str, *, seed: int = 7, min_posts: int = 3, rate_scale: float = 1.0
) -> dict:
    """Cohort calls against the simulator's truth over one whole simulated run.

    Replays the run in event order the way the worker does (bio rules + each author's
    running stance history, ``min_posts`` stance posts before history counts) and scores
    every post's call. Media and spam accounts are truly ``unknown``. "bio only" is the
    same rules with no history: the gap between the two is what the history buys.
    """
    from models.cohort import (
        LEAN_LEFT,
        LEAN_RIGHT,
        MODERATE,
        UNKNOWN,
        UNPLACED,
        CohortHistory,
        cohort_from_bio,
        decide,
    )

    event = load_event(event_id)
    posts = [
        rec.post
        for rec in simulate(event, "cohort-eval", seed=seed, speed=0, rate_scale=rate_scale)
        if rec.post is not None and rec.post.truth and rec.post.truth.get("cohort")
    ]
    texts = sorted({p.text for p in posts})
    stance = dict(zip(texts, (o["stance"] for o in scorer.score_texts(texts)), strict=True))
    histories: dict[str, CohortHistory] = {}
    gold, with_history, bio_only = [], [], []
    last_call: dict[str, str] = {}
    author_truth: dict[str, str] = {}
    bio_says: dict[str, str] = {}
    for post in posts:
        truth = (post.truth or {}).get("cohort")
        truth = truth if truth in (MODERATE, LEAN_LEFT, LEAN_RIGHT) else UNKNOWN
        bio = cohort_from_bio(post.author.bio)
        history = histories.setdefault(post.author.id, CohortHistory())
        history.add(stance[post.text])
        label, _ = decide(bio, history, min_posts=min_posts)
        gold.append(truth)
        with_history.append(label)
        bio_only.append(decide(bio, None, min_posts=min_posts)[0])
        last_call[post.author.id] = label
        author_truth[post.author.id] = truth
        bio_says[post.author.id] = bio[0]
    labels = [MODERATE, LEAN_LEFT, LEAN_RIGHT, UNKNOWN]

    def summary(pred: list[str]) -> dict:
        recall = recall_score(gold, pred, labels=labels, average=None, zero_division=0)
        return {
            "accuracy": round(float(np.mean(np.array(gold) == np.array(pred))), 4),
            "macro_recall": round(float(np.mean(recall)), 4),
            "recall": {lab: round(float(r), 4) for lab, r in zip(labels, recall, strict=True)},
            "called_unknown": round(float(np.mean(np.array(pred) == UNKNOWN)), 4),
            "called_unplaced": round(float(np.mean(np.array(pred) == UNPLACED)), 4),
        }

    authors = list(last_call)
    return {
        "event": event_id,
        "posts": len(posts),
        "authors": len(authors),
        "min_posts": min_posts,
        "voters_with_silent_bio": round(
            float(
                np.mean([bio_says[a] == UNPLACED for a in authors if author_truth[a] != UNKNOWN])
            ),
            4,
        ),
        "with_history": summary(with_history),
        "bio_only": summary(bio_only),
        "author_final_accuracy": round(
            float(np.mean([last_call[a] == author_truth[a] for a in authors])), 4
        ),
    }
