"""Tests for models/: scorer contract and behaviour, cache, HF opt-in (cohorts: test_cohort.py).

The scorer loads once per module (encoder ~5 s). Tests that need the labelled data skip
with a reason when ``settings.shared_data`` is absent.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from models.config import VARIANTS
from models.paths import ARTIFACTS_DIR
from models.scorer import OTHER_TOPIC, label_scores, load_scorer, map_sentiment_labels
from stream.config import Settings

TARGETS = ["Donald Trump", "Kamala Harris", "Elon Musk"]


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(Settings(score_cache_size=8, score_threads=2), targets=TARGETS)


# --- scorer contract -------------------------------------------------------------------


def test_output_shape_and_probabilities(scorer):
    (out,) = scorer.score_texts(["The debate tonight was something else."])
    assert set(out) == {"sentiment", "stance", "emotion", "topic"}
    assert set(out["sentiment"]["scores"]) == {"negative", "neutral", "positive"}
    assert set(out["emotion"]["scores"]) == {"anger", "joy", "optimism", "sadness"}
    assert set(out["stance"]) == set(TARGETS)
    for target in TARGETS:
        assert set(out["stance"][target]["scores"]) == {"favor", "against", "none"}
    for block in [out["sentiment"], out["emotion"], out["topic"], *out["stance"].values()]:
        assert block["label"] == max(block["scores"], key=block["scores"].get)
        assert sum(block["scores"].values()) == pytest.approx(1.0, abs=2e-3)


def test_version_and_targets(scorer):
    assert re.fullmatch(
        r"minilm-l6\+(heads|lora|full)-\d{4}\.\d{2}\.\d{2}-[0-9a-f]{8}"
        r"\+(" + "|".join(VARIANTS) + ")",
        scorer.version,
    )
    assert scorer.version.endswith(scorer.variant)
    assert scorer.targets == TARGETS


@pytest.mark.parametrize(
    ("task", "cases"),
    [
        (
            "sentiment",
            {
                "I absolutely love this, what a wonderful and happy day!": "positive",
                "This is awful, I hate it, worst experience of my life.": "negative",
            },
        ),
        (
            "emotion",
            {
                "I am so furious and angry right now, this is outrageous #rage": "anger",
                "I miss her so much, I can't stop crying, so sad and lonely": "sadness",
            },
        ),
    ],
)
def test_clear_cases(scorer, task: str, cases: dict[str, str]):
    outputs = scorer.score_texts(list(cases))
    assert [o[task]["label"] for o in outputs] == list(cases.values())
    if task == "sentiment":
        pos, neg = outputs
        assert pos["sentiment"]["scores"]["positive"] > neg["sentiment"]["scores"]["positive"]


def test_stance_towards_named_target(scorer):
    fav, ag = scorer.score_texts(
        [
            "Trump 2024! Best president ever, he will make America great again #MAGA",
            "Trump is a liar and a crook, he must never be president again #NeverTrump",
        ]
    )
    t = "Donald Trump"
    assert fav["stance"][t]["label"] == "favor"
    assert ag["stance"][t]["label"] == "against"
    assert fav["stance"][t]["scores"]["favor"] > ag["stance"][t]["scores"]["favor"]


def test_stance_none_for_unrelated_post_and_target(scorer):
    (out,) = scorer.score_texts(["Just baked banana bread and went for a walk with my dog."])
    for target in TARGETS:
        assert out["stance"][target]["label"] == "none", target
    (trump,) = scorer.score_texts(["Trump's rally in Ohio was huge, great speech! #MAGA"])
    assert trump["stance"]["Elon Musk"]["label"] == "none"


def test_topics_default_and_custom(scorer):
    econ, outage, cooking = scorer.score_texts(
        [
            "Inflation and grocery prices are crushing working families, jobs and wages matter",
            "The livestream is down again, the site keeps crashing and buffering",
            "my cat knocked the flowerpot over lol",
        ]
    )
    assert econ["topic"]["label"] == "economy"
    assert outage["topic"]["label"] == "tech_outage"
    assert cooking["topic"]["label"] == OTHER_TOPIC
    custom = load_scorer(
        Settings(score_cache_size=4),
        targets=["Donald Trump"],
        topics=[("space", "rockets, NASA, Mars missions and astronauts"), ("other", "")],
    )
    (out,) = custom.score_texts(["NASA launched a new rocket to Mars with astronauts"])
    assert set(out["topic"]["scores"]) == {"space", "other"}
    assert out["topic"]["label"] == "space"


# --- cache -----------------------------------------------------------------------------


def test_cache_serves_repeats_without_encoder(scorer):
    text = "cache check: the moderator cut him off again"
    before = scorer.encoder_calls
    first = scorer.score_texts([text, text, text])
    assert scorer.encoder_calls == before + 1  # duplicates within a call: one pass
    assert first[0] == first[1] == first[2]
    second = scorer.score_texts([text])
    assert scorer.encoder_calls == before + 1  # between calls: served from the cache
    assert second[0] == first[0]
    second[0]["sentiment"]["label"] = "mutated"  # callers cannot corrupt the cache
    assert scorer.score_texts([text])[0] == first[0]


def test_cache_is_bounded_lru(scorer):
    texts = [f"lru probe number {i} about the debate" for i in range(12)]
    scorer.score_texts(texts)
    assert len(scorer._cache) <= scorer.cache_size == 8
    calls = scorer.encoder_calls
    scorer.score_texts([texts[-1]])  # recent: cached
    assert scorer.encoder_calls == calls
    scorer.score_texts([texts[0]])  # evicted: encoded again
    assert scorer.encoder_calls == calls + 1


def test_same_result_as_uncached_scoring(scorer):
    text = "Harris had the better answer on the economy tonight"
    a = scorer.score_texts([text])[0]
    fresh = load_scorer(Settings(score_cache_size=0), targets=TARGETS)
    b = fresh.score_texts([text, "another text to change the batch padding"])[0]
    for task in ("sentiment", "emotion", "topic"):
        assert a[task]["label"] == b[task]["label"]
        for k, v in a[task]["scores"].items():
            assert b[task]["scores"][k] == pytest.approx(v, abs=2e-3)


def test_length_grouped_training_pass_matches_one_padded_pass():
    from models.encoder import Encoder

    encoder = Encoder(max_length=32)
    texts = ["short", "a much longer post about the debate and the economy tonight", "mid one"]
    texts += [f"post number {i} " * (i % 4 + 1) for i in range(9)]
    with torch.no_grad():
        grouped = encoder.embed_texts(texts, chunk=4)
        padded = encoder(encoder.tokenize(texts))
    assert grouped.shape == padded.shape
    assert torch.allclose(grouped, padded, atol=1e-5)  # same rows, same order


def test_dropout_free_training_is_deterministic_and_matches_inference():
    from models.encoder import Encoder

    encoder = Encoder(max_length=32)
    texts = ["the debate was great", "he lied about the economy again"]
    encoder.model.train()
    with torch.no_grad():
        noisy = encoder.embed_texts(texts), encoder.embed_texts(texts)
    assert not torch.allclose(*noisy)  # the base config's dropout 0.1
    encoder.set_train_dropout(0.0)
    assert encoder.model.config._attn_implementation == "eager"
    with torch.no_grad():
        a, b = encoder.embed_texts(texts), encoder.embed_texts(texts)
    assert torch.equal(a, b)
    np.testing.assert_allclose(a.numpy(), encoder.encode(texts), atol=1e-5)


def test_full_fine_tuning_can_keep_the_word_embeddings_frozen():
    from models.encoder import Encoder

    encoder = Encoder(max_length=32)
    encoder.unfreeze(word_embeddings=False)
    trainable = {n for n, p in encoder.model.named_parameters() if p.requires_grad}
    assert "embeddings.word_embeddings.weight" not in trainable
    assert "encoder.layer.0.attention.self.query.weight" in trainable
    assert "embeddings.position_embeddings.weight" in trainable


# --- artifacts -------------------------------------------------------------------------


def test_artifacts_small_and_described():
    files = list(ARTIFACTS_DIR.iterdir())
    # a few MB: float16 heads, an int4 encoder delta (or adapters), JSON, one plot
    assert sum(f.stat().st_size for f in files if f.is_file()) < 8_000_000
    meta = json.loads((ARTIFACTS_DIR / "model.json").read_text())
    assert meta["labels"]["stance"] == ["favor", "against", "none"]
    metrics = json.loads((ARTIFACTS_DIR / "metrics.json").read_text())
    assert 0.5 < metrics["sentiment"]["macro_recall"] <= 1.0
    assert set(metrics["pstance"]) >= {"Donald Trump", "Joe Biden", "Bernie Sanders", "pooled"}


# --- Hugging Face opt-in -------------------------------------------------------------------


def _tiny_classifier(path, id2label):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "the", "movie", "is"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    return model


def test_hf_sentiment_opt_in(tmp_path, scorer):
    import torch
    from transformers import BertTokenizerFast

    model = _tiny_classifier(tmp_path, {0: "POSITIVE", 1: "NEGATIVE", 2: "neutral"})
    settings = Settings(
        score_hf_model=str(tmp_path), score_allow_hub_download=False, score_cache_size=4
    )
    hf = load_scorer(settings, targets=["Donald Trump"])
    assert "+hf:" in hf.version
    text = "the movie is good"
    out = hf.score_texts([text])[0]
    tok = BertTokenizerFast.from_pretrained(tmp_path)
    with torch.inference_mode():
        probs = torch.softmax(model.eval()(**tok([text], return_tensors="pt")).logits, -1)[0]
    expected = {"positive": probs[0], "negative": probs[1], "neutral": probs[2]}
    for name, p in expected.items():
        assert out["sentiment"]["scores"][name] == pytest.approx(float(p), abs=1e-3)
    # the other heads still come from the bundled model
    assert set(out["stance"]) == {"Donald Trump"}


def test_hf_missing_model_fails_fast_offline(tmp_path):
    settings = Settings(
        score_hf_model="nobody/definitely-not-a-local-model", score_allow_hub_download=False
    )
    with pytest.raises(OSError):
        load_scorer(settings)


def test_label_scores_rows_exact():
    probs = np.array([[0.123456, 0.8, 0.076544], [0.5, 0.25, 0.25]], dtype=np.float32)
    assert label_scores(["a", "b", "c"], probs) == [
        {"label": "b", "scores": {"a": 0.1235, "b": 0.8, "c": 0.0765}},
        {"label": "a", "scores": {"a": 0.5, "b": 0.25, "c": 0.25}},
    ]
    assert label_scores(["a", "b"], np.zeros((0, 2), dtype=np.float32)) == []


def test_label_mapping_by_name():
    assert map_sentiment_labels({0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}) == [0, 1, 2]
    assert map_sentiment_labels({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}) == [0, 1, 2]
    assert map_sentiment_labels({0: "POS", 1: "NEG"}) == [2, 0]
    stars = map_sentiment_labels({i: f"{i + 1} stars" for i in range(5)})
    assert stars == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError):
        map_sentiment_labels({0: "spam", 1: "ham"})


# --- labelled data (skips without it) ---------------------------------------------------


def test_stance_negatives_do_not_mention_their_target(data_root):
    from models.data import mentions, stance_train_set

    rows = stance_train_set(data_root, weak_limit=200)
    negatives = [ex for ex in rows if ex.source == "negative"]
    assert len(negatives) > 1000
    assert {ex.label for ex in negatives} == {"none"}
    assert not any(mentions(ex.text, ex.target) for ex in negatives)
    assert not {"Kamala Harris", "Elon Musk"} & {ex.target for ex in rows}


def test_sentiment_val_accuracy_sample(scorer, data_root):
    from sklearn.metrics import recall_score

    from models.data import load_labelled

    texts, gold = load_labelled(data_root, "sentiment", "val")
    texts, gold = texts[:200], gold[:200]
    pred = [o["sentiment"]["label"] for o in scorer.score_texts(texts)]
    assert recall_score(gold, pred, average="macro") > 0.55


def test_embeddings_are_normalised(scorer):
    emb = scorer.embed(["one", "two words"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_event_topics_compose_label_description_keywords():
    from models.scorer import event_topics

    class Topic:
        id, label, description, keywords = "economy", "Economy", "Prices and jobs.", ["gas"]

    got = event_topics([Topic(), {"id": "other", "label": "Other", "description": ""}])
    assert got == [("economy", "Economy: Prices and jobs. (gas)"), ("other", "Other")]


def test_score_cache_is_bounded_in_bytes_and_entries():
    from models.cache import ENTRY_OVERHEAD_BYTES, ScoreCache

    cache = ScoreCache(max_entries=100, max_bytes=10 * (ENTRY_OVERHEAD_BYTES + 1000))
    for i in range(30):
        cache.put(f"{i:04d}" + "x" * 996, {"i": i})  # 1,000-byte texts
    assert len(cache) == 10 and cache.bytes <= cache.max_bytes
    assert "0029" + "x" * 996 in cache and "0019" + "x" * 996 not in cache
    cache.get("0020" + "x" * 996)  # recently used: survives the next eviction
    cache.put("new", {"i": -1})
    assert "0020" + "x" * 996 in cache and "0021" + "x" * 996 not in cache
    cache.put("y" * 10**6, {"i": -2})  # larger than the whole bound: not cached
    assert "y" * 10**6 not in cache and cache.bytes <= cache.max_bytes
    small = ScoreCache(max_entries=3, max_bytes=10**9)
    for i in range(5):
        small.put(str(i), {})
    assert len(small) == 3


def test_model_card_matches_the_artifacts():
    """MODEL_CARD.md's metrics block is what `python -m models.card` renders (no drift)."""
    from models.card import CARD, rendered_card

    assert CARD.read_text() == rendered_card(), "run: python -m models.card"
