"""The one written form of a post (models.text), and that training and scoring both use it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.text import (
    MASKED_MENTION,
    RAW_FORM,
    TEXT_FORM,
    UNESCAPED_FORM,
    mask_mentions,
    model_text_form,
    normalize_post,
    normalize_texts,
    tweeteval_spelling,
    unescape_post,
)


@pytest.mark.parametrize(
    ("raw", "form"),
    [
        # TweetEval ships some characters as literal escapes (10% of its sentiment val)
        ("Rui En\\u2019s ex\\u002c by the rich guy", "Rui En's ex, by the rich guy"),
        ("so funny \\ud83d\\ude02", "so funny \N{FACE WITH TEARS OF JOY}"),
        ("lone \\ud83d surrogate", "lone \N{REPLACEMENT CHARACTER} surrogate"),
        ("not an escape: \\user and \\u12", "not an escape: \\user and \\u12"),
        # links: the SemEval 2013-16 files keep them, the test sets do not
        ("Watch the trailer http://t.co/TZZzrrKa via @PJMedia", "Watch the trailer via @PJMedia"),
        ("half price! https://t.co/KET6EGD1an", "half price!"),
        ("Get it here &gt;&gt;&gt;http://t.co/puba8PjJbn", "Get it here >>>"),
        ("see www.example.com/a?b=1 now", "see now"),
        ("awww. so cute", "awww. so cute"),
        ("HTTPS://T.CO/ABC shouting", "shouting"),
        # the SemEval-2016 stance marker is data, not text; other hashtags stay
        ("Build the wall #Trump2016 #SemST", "Build the wall #Trump2016"),
        ("I’m “fine” &amp; you?", 'I\'m "fine" & you?'),
        ("  spaced\tout\n\npost  ", "spaced out post"),
        ("@JoeBiden thank you", "@JoeBiden thank you"),  # handles name the target
        ("http://t.co/only-a-link", ""),
        ("", ""),
    ],
)
def test_normalize_post(raw: str, form: str) -> None:
    assert normalize_post(raw) == form


_PIECES = ["\\u", "\\ud83d", "http://", "www.", "&amp;", "&gt", "#SemST", " ", "\u2019"]


_UTF8 = st.text(alphabet=st.characters(codec="utf-8"))


@given(st.lists(_UTF8 | st.sampled_from(_PIECES)).map("".join))
def test_normalize_post_any_text(raw: str) -> None:
    """Any text gives a string without links or #SemST, trimmed, with single spaces, that
    UTF-8 can carry (Kafka and DuckDB take it)."""
    form = normalize_post(raw)
    assert "http://" not in form.lower() and not re.search(r"#semst\b", form, re.IGNORECASE)
    assert form == form.strip() and "  " not in form
    form.encode("utf-8")


def test_normalize_texts_by_form() -> None:
    assert normalize_texts(["b http://x", "a"], TEXT_FORM) == ["b", "a"]
    assert normalize_texts(["b http://x"], RAW_FORM) == ["b http://x"]
    with pytest.raises(ValueError, match="unknown text form"):
        normalize_texts(["a"], "tweet-v9")


def test_a_model_is_read_in_the_form_it_was_trained_on() -> None:
    assert model_text_form({}) == RAW_FORM  # models from before the normaliser
    assert model_text_form({"text_form": TEXT_FORM}) == TEXT_FORM
    with pytest.raises(ValueError, match="trained on text form"):
        model_text_form({"text_form": "tweet-v9"})


def test_training_and_scoring_tokenize_the_same_form() -> None:
    """The training tokenizer (Encoder.tokenize) and the runtimes' (tokenize_ids) both see
    the normalised post: a link or an escape changes no token id."""
    from models.encoder import Encoder
    from models.runtime import tokenize_ids

    encoder = Encoder(max_length=64)
    raw = ["Rui En\\u2019s trailer http://t.co/x #SemST", "I’m fine"]
    clean = ["Rui En's trailer", "I'm fine"]
    ids = tokenize_ids(encoder.tokenizer, raw, 64, TEXT_FORM)
    assert ids == tokenize_ids(encoder.tokenizer, clean, 64, TEXT_FORM)
    assert ids == [
        row[: int(mask.sum())]
        for row, mask in zip(
            encoder.tokenize(raw)["input_ids"].tolist(),
            encoder.tokenize(raw)["attention_mask"],
            strict=True,
        )
    ]
    # the link really was a different input before normalisation, and a raw model keeps it
    assert encoder.tokenizer(raw[0])["input_ids"] != ids[0]
    as_given = tokenize_ids(encoder.tokenizer, raw, 64, RAW_FORM)
    assert as_given[0] == encoder.tokenizer(raw[0])["input_ids"]


@pytest.mark.parametrize(
    ("raw", "form"),
    [
        # TweetEval's escaped commas and apostrophes read as the characters they spell
        ("Rui En\\u2019s ex\\u002c by the rich guy", "Rui En's ex, by the rich guy"),
        # its CSV wrapper goes, once, with or without the closing quote (cut posts lose it)
        ('"National hot dog day, then dance day."', "National hot dog day, then dance day."),
        (
            '"Restoration of the arch began on Wednesday,...',
            "Restoration of the arch began on Wednesday,...",
        ),
        (
            '"when she looked at me like ""wtf help me""',
            'when she looked at me like ""wtf help me"',
        ),
        # an author's own quotes stay (straightened, as the training posts mostly have them)
        ('He said "no" to that', 'He said "no" to that'),
        ('"We need our ideals..." Oh, I thought', '"We need our ideals..." Oh, I thought'),
        ("\u201cFake news\u201d says he", '"Fake news" says he'),
        # nothing else changes: links, mentions, entities, #SemST, spacing
        ("@JoeBiden  &amp; http://t.co/x #SemST", "@JoeBiden  &amp; http://t.co/x #SemST"),
        ('"', '"'),
        ("", ""),
    ],
)
def test_unescape_post_undoes_the_file_format_only(raw: str, form: str) -> None:
    assert unescape_post(raw) == form


@given(st.lists(_UTF8 | st.sampled_from([*_PIECES, '"', "\\u002c"])).map("".join))
def test_unescape_post_any_text(raw: str) -> None:
    """Any text keeps its length or shrinks (escapes decode, a wrapper goes) and stays text
    UTF-8 can carry; a text with no escape, no leading quote and no curly quote is unchanged."""
    form = unescape_post(raw)
    assert len(form) <= len(raw)
    form.encode("utf-8")
    if not re.search(r"\\u|^\"|[\u2018\u2019\u201c\u201d]", raw):
        assert form == raw


def test_the_tweeteval_val_file_reads_like_the_training_posts_in_the_unescaped_form(
    data_root,
) -> None:
    """On the real files: TweetEval val has escapes and CSV wrappers that no training post
    has; in the form the shipped model reads, val has no escape and 6 of its 397 posts that
    open with a quote still do (each an author's quotation, closed)."""
    import json

    def texts(name: str) -> list[str]:
        lines = (data_root / "sentiment" / name).read_text().splitlines()
        return [json.loads(line)["text"] for line in lines]

    train, val = texts("train.jsonl"), texts("val.jsonl")
    assert not any("\\u002c" in t or t.startswith('"') for t in train)
    assert sum("\\u002c" in t for t in val) > 100 and sum(t.startswith('"') for t in val) > 300
    read = normalize_texts(val, UNESCAPED_FORM)
    assert not any("\\u002c" in t or "\\u2019" in t for t in read)
    opening = [t for t in read if t.startswith('"')]  # an author's quotation, closed
    assert len(opening) < 10 and all(t.count('"') % 2 == 0 for t in opening)


def test_the_shipped_model_reads_posts_unescaped() -> None:
    from models.artifact_store import read_manifest
    from models.paths import ARTIFACTS_DIR

    assert model_text_form(read_manifest(ARTIFACTS_DIR)) == UNESCAPED_FORM


@pytest.mark.parametrize("form", [RAW_FORM, UNESCAPED_FORM, TEXT_FORM])
def test_a_loaded_model_encodes_in_its_manifests_form(tmp_path, form: str) -> None:
    """The scorer's encoder (torch here; the ONNX / OpenVINO ones take the same manifest
    value) reads posts in the form the model was trained on."""
    import json
    import shutil

    from models.config import ScorerConfig
    from models.paths import ARTIFACTS_DIR
    from models.scorer import build_encoder, load_model

    model = tmp_path / "model"
    shutil.copytree(ARTIFACTS_DIR, model)
    manifest = json.loads((model / "model.json").read_text())
    manifest["text_form"] = form
    (model / "model.json").write_text(json.dumps(manifest))
    assert load_model(model)[0].text_form == form
    encoder = build_encoder("torch-fp32", ScorerConfig(), model)
    assert encoder.text_form == form
    with_link, without = encoder.encode(["great night http://t.co/abc", "great night"])
    assert (float(with_link @ without) > 0.9999) == (form == TEXT_FORM)
    escaped, wrapped, plain = encoder.encode(
        ["it\\u2019s over\\u002c folks", '"it\'s over, folks"', "it's over, folks"]
    )
    assert (float(escaped @ plain) > 0.9999) == (form != RAW_FORM)
    assert (float(wrapped @ plain) > 0.9999) == (form == UNESCAPED_FORM)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@JoeBiden you lost me", "@user you lost me"),
        (".@realDonaldTrump lies again", ".@user lies again"),
        ("RT @a_b: @c and @user agree", "RT @user: @user and @user agree"),
        ("write to me@example.org @ noon", "write to me@example.org @ noon"),  # not mentions
        ("no handles here", "no handles here"),
    ],
)
def test_mentions_are_spelt_as_the_tweeteval_sets_spell_them(text: str, expected: str) -> None:
    assert mask_mentions(text) == expected


@given(st.text(alphabet=st.sampled_from(list("ab @._x")), max_size=40))
def test_masking_is_idempotent_and_leaves_no_other_handle(text: str) -> None:
    once = mask_mentions(text)
    assert mask_mentions(once) == once
    handles = re.findall(r"(?<![\w@])@\w+", once)
    assert set(handles) <= {MASKED_MENTION}


def test_a_masked_share_masks_about_that_share_and_zero_leaves_the_data_alone() -> None:
    import random

    from models.lora import masked_share

    posts = [f"@someone{i} said hi" for i in range(2000)]
    rng = random.Random(5)
    state = rng.getstate()
    assert masked_share(posts, 0.0, rng) is posts
    assert rng.getstate() == state  # no draw: the runs before the option keep their order
    masked = masked_share(posts, 0.5, rng)
    share = sum(m == "@user said hi" for m in masked) / len(posts)
    assert 0.45 < share < 0.55
    assert all(m in (p, "@user said hi") for m, p in zip(masked, posts, strict=True))
    assert masked_share(posts, 1.0, rng) == ["@user said hi"] * len(posts)


def test_tweeteval_spelling_drops_links_and_masks_mentions_only() -> None:
    post = "@JoeBiden wins!  https://t.co/x \\u2019 &amp; #SemST"
    assert tweeteval_spelling(post) == "@user wins! \\u2019 &amp; #SemST"


def test_the_out_of_time_dev_set_is_also_scored_as_the_later_year_test_spells_posts(
    data_root,
) -> None:
    """dev_logits encodes the out-of-time posts twice, as written and in the TweetEval
    spelling, and the metrics report both (the real dev files; a stand-in embedding)."""
    import numpy as np

    from models.data import load_sentiment_oot
    from models.evaluate import OOT_TWEETEVAL_SPELLING, dev_logits, metrics_from_logits
    from models.heads import Heads

    seen: list[str] = []

    def embed(texts):
        seen.extend(texts)
        rng = np.random.default_rng(len(seen))
        return rng.normal(size=(len(texts), 384)).astype(np.float32)

    oot, _ = load_sentiment_oot(data_root)
    with_handle = [t for t in oot if re.search(r"(?<![\w@])@(?!user\b)\w+", t)]
    assert len(with_handle) > 100  # the later-year file keeps real handles
    sets = dev_logits(Heads(dim=384), embed, data_root)
    assert sets[OOT_TWEETEVAL_SPELLING].gold == sets["sentiment_oot"].gold
    assert with_handle[0] in seen and tweeteval_spelling(with_handle[0]) in seen
    metrics = metrics_from_logits(sets)
    spelt = metrics[OOT_TWEETEVAL_SPELLING]
    assert spelt["n"] == metrics["sentiment_oot"]["n"] == len(oot)
    assert spelt["spelling"] == "links removed, mentions @user"
