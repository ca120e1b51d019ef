"""`swingdial score`: the batch path uses the real model and keeps going past bad lines."""

from __future__ import annotations

import json

from click.testing import CliRunner

from stream.cli import main


def test_score_writes_the_documented_shape_and_skips_bad_lines(tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "good", "text": "I love this, what a wonderful, happy night!"}),
                "{broken json",
                json.dumps({"id": "bad", "text": "Awful. Terrible. I hate everything about it."}),
                json.dumps({"text": "no id here"}),
                json.dumps({"id": 7, "text": "Donald Trump is the best president we ever had"}),
            ]
        )
    )
    out = tmp_path / "scored.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "score",
            "--input",
            str(source),
            "--output",
            str(out),
            "--targets",
            "Donald Trump,Elon Musk",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "posts.jsonl:2: skipped: not valid JSON" in result.output
    assert "posts.jsonl:4: skipped: needs an 'id'" in result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["good", "bad", 7]
    by_id = {line["id"]: line for line in lines}
    for line in lines:
        assert set(line["sentiment"]["scores"]) == {"negative", "neutral", "positive"}
        assert set(line["stance"]) == {"Donald Trump", "Elon Musk"}
        for stance in line["stance"].values():
            assert set(stance["scores"]) == {"favor", "against", "none"}
        assert line["model_version"]
    assert by_id["good"]["sentiment"]["label"] == "positive"
    assert by_id["bad"]["sentiment"]["label"] == "negative"
    assert by_id[7]["stance"]["Donald Trump"]["label"] == "favor"
    assert by_id[7]["stance"]["Elon Musk"]["label"] == "none"


def test_score_help_has_examples():
    result = CliRunner().invoke(main, ["score", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--targets" in result.output


def test_score_reads_a_tweeteval_spelt_post_as_the_plain_post(tmp_path):
    """TweetEval's files write commas and apostrophes as literal escapes and wrap posts in
    CSV quotes; the shipped model reads them undone, so both spellings score the same."""
    plain = "I'm at DAR Constitution Hall in Washington, DC - Sep 15"
    spelt = '"I\\u2019m at DAR Constitution Hall in Washington\\u002c DC - Sep 15"'
    source, out = tmp_path / "posts.jsonl", tmp_path / "scored.jsonl"
    rows = [{"id": "plain", "text": plain}, {"id": "spelt", "text": spelt}]
    source.write_text("\n".join(json.dumps(row) for row in rows))
    result = CliRunner().invoke(
        main, ["score", "--input", str(source), "--output", str(out), "--targets", "Donald Trump"]
    )
    assert result.exit_code == 0, result.output
    by_id = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert "\\u2019" in spelt and by_id["plain"]["sentiment"] == by_id["spelt"]["sentiment"]
    assert by_id["plain"]["stance"] == by_id["spelt"]["stance"]
