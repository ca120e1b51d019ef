"""One written form of a post for training, evaluation and scoring.

The public test sets the project is judged on (TweetEval sentiment = SemEval-2017, TweetEval
stance and emotion) spell posts one way: links removed, some characters as literal
``\\u2019`` escapes (10% of TweetEval sentiment val), HTML entities. The SemEval 2013-16
training files spell them another: 28% of the sentiment posts keep their link (53% of those
are neutral). Passing every text through :func:`normalize_post` before the tokenizer, in
training and at scoring time alike, keeps both sides in one form. Measured in session 8
(models/MODEL_CARD.md): the shipped model did not lean on links (its out-of-time score is
0.004 higher with them removed), and a model trained on this form scores within seed noise
of it, so the form buys consistency, not a measured accuracy gain.

What it does: decode literal ``\\uXXXX`` escapes and HTML entities, drop links, drop the
SemEval-2016 ``#SemST`` marker, straighten typographic quotes (the tokenizer keeps ``’`` and
``'`` apart), fold white space. Mentions stay as written (P-Stance keeps handles such as
``@JoeBiden``, which name the target). Two helpers stand apart from the forms:
:func:`mask_mentions` (training may read a share of posts with every handle as ``@user``)
and :func:`tweeteval_spelling` (the evaluation also scores the out-of-time posts as the
later-year test spells its posts).

``UNESCAPED_FORM`` (``raw-unescaped``) is the lighter form the shipped model, trained on
posts as written, is read in since session 11 (:func:`unescape_post`): only a file
format's marks undone, links and handles kept.

``TEXT_FORM`` names the normalised form. A model's manifest says which form it was trained on
(``"text_form"``; models from before it have none and are ``"raw"``), and the encoder that
loads the model uses that one (:func:`model_text_form`, :func:`normalize_texts`), so an
older model is still scored as it was trained. A change here is a new form, never a silent
one.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

TEXT_FORM = "tweet-v1"  # the form new models are trained on
RAW_FORM = "raw"  # texts as given: models trained before the normaliser
UNESCAPED_FORM = "raw-unescaped"  # as written, a file format's escapes undone (unescape_post)

_ESCAPES = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")
_LINK = re.compile(r"(?:https?://|(?<![\w.])www\.)\S*", re.IGNORECASE)  # not "awww."
_SEMST = re.compile(r"#SemST\b", re.IGNORECASE)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_SPACE = re.compile(r"\s+")
_MENTION = re.compile(r"(?<![\w@])@\w+")  # "@JoeBiden", not "name@mail.com"
MASKED_MENTION = "@user"  # how TweetEval's sets (the sentiment test among them) spell every mention


def _decode_escapes(match: re.Match[str]) -> str:
    """A run of literal ``\\uXXXX`` escapes as the characters they spell (surrogate pairs
    joined; a lone surrogate becomes U+FFFD rather than an unencodable string)."""
    units = b""
    for hex_digits in match.group(0).split("\\u")[1:]:
        units += int(hex_digits, 16).to_bytes(2, "little")
    return units.decode("utf-16-le", errors="replace")


def _unescape(text: str) -> str:
    """Literal ``\\uXXXX`` escapes decoded (both written forms start here)."""
    return _ESCAPES.sub(_decode_escapes, text) if "\\u" in text else text


def normalize_post(text: str) -> str:
    """The post in the project's one written form (see the module docstring).

    >>> normalize_post("Rui En\\\\u2019s trailer &gt;&gt; https://t.co/x #SemST")
    "Rui En's trailer >>"
    """
    text = _unescape(text)
    if "&" in text:
        text = html.unescape(text)
    text = _LINK.sub(" ", text)
    text = _SEMST.sub(" ", text)
    text = text.translate(_QUOTES)
    return _fold_space(text)


def unescape_post(text: str) -> str:
    """The post as written, with what a file format added to it undone; nothing else changed.

    The TweetEval sentiment files (val here; the later-year test went through the same
    conversion) carry two marks of it that no training post has: every comma and apostrophe
    of some posts as a literal ``\\u002c`` / ``\\u2019`` escape (10% of val), and a CSV
    wrapper, the whole post inside straight double quotes (20% of val; 0 of the 48,962
    SemEval 2013-16 training posts starts with one). A model trained on posts as written
    reads each as noise, and it mostly saw straight apostrophes (31% of the SemEval posts
    have one, 7% a typographic one). This form decodes the escapes, drops a CSV wrapper
    (once, see :func:`_csv_wrapped`) and straightens typographic quotes; links, mentions,
    entities and ``#SemST`` stay. Measured on the shipped model: models/MODEL_CARD.md,
    session 11.

    >>> unescape_post('"Don\\\\u2019t\\\\u002c &amp; https://t.co/x"')
    "Don't, &amp; https://t.co/x"
    """
    text = _unescape(text)
    if _csv_wrapped(text):
        text = text[1:-1] if text.endswith('"') else text[1:]
    return text.translate(_QUOTES)


def _csv_wrapped(text: str) -> bool:
    """Whether the post sits inside a CSV writer's straight quotes: it starts with one and
    either ends with one or leaves one unclosed (a wrapped post cut short loses its closing
    quote). A post that opens with an author's quotation (``"We need..." Oh, ...``, 13 of
    P-Stance val's 14 posts that start with a quote) has them closed and stays."""
    return (
        len(text) > 1 and text.startswith('"') and (text.endswith('"') or text.count('"') % 2 == 1)
    )


def _fold_space(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def mask_mentions(text: str) -> str:
    """Every ``@handle`` spelt ``@user``, as the TweetEval sets spell them.

    The SemEval 2013-16 sentiment posts and P-Stance keep real handles while the TweetEval
    sets (sentiment test and val, emotion, stance) have ``@user`` only, so in training
    ``@user`` marks the emotion and SemEval-stance posts. Training can mask a share of the
    posts (``LoraConfig.mask_mentions``) to make the encoder indifferent to the spelling.

    >>> mask_mentions("@JoeBiden and @user, mail me@x.org")
    '@user and @user, mail me@x.org'
    """
    return _MENTION.sub(MASKED_MENTION, text)


def tweeteval_spelling(text: str) -> str:
    """The post spelt as the TweetEval sets spell theirs: links removed, every mention
    ``@user``. The later-year sentiment test (SemEval-2017 in TweetEval) is spelt so, the
    out-of-time dev posts are not; the evaluation scores them both ways."""
    return mask_mentions(_fold_space(_LINK.sub(" ", text)))


def _as_given(text: str) -> str:
    return text


# Each known form and what makes a text into it.
_FORMS: dict[str, Callable[[str], str]] = {
    RAW_FORM: _as_given,
    UNESCAPED_FORM: unescape_post,
    TEXT_FORM: normalize_post,
}
TEXT_FORMS = tuple(_FORMS)


def normalize_texts(texts: Iterable[str], form: str) -> list[str]:
    """Each text in ``form`` (one of ``TEXT_FORMS``), in order."""
    if form not in _FORMS:
        raise ValueError(f"unknown text form {form!r} (this swingdial knows {TEXT_FORMS})")
    return [_FORMS[form](text) for text in texts]


def model_text_form(manifest: Mapping[str, Any]) -> str:
    """The written form a model reads posts in, as its manifest names it (none named: raw).
    A model trained on raw posts may name ``raw-unescaped``: it differs from raw only in
    marks the training posts lack (the shipped model does)."""
    form = str(manifest.get("text_form", RAW_FORM))
    if form not in _FORMS:
        raise ValueError(f"the model was trained on text form {form!r}; known: {TEXT_FORMS}")
    return form
