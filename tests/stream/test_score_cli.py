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
