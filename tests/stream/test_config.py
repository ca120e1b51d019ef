from pathlib import Path

import pytest

from stream.config import Settings


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SWINGDIAL_KAFKA_BOOTSTRAP", "kafka.example:9999")
    monkeypatch.setenv("SWINGDIAL_KAFKA_PARTITIONS", "3")
    monkeypatch.setenv("SWINGDIAL_HOME", str(tmp_path))
    monkeypatch.setenv("SWINGDIAL_TARGETS", '["Kamala Harris"]')
    settings = Settings()
    assert settings.kafka.client_config()["bootstrap_servers"] == ["kafka.example:9999"]
    assert settings.kafka.partitions == 3
    assert settings.db_path == tmp_path / "swingdial.duckdb"
    assert settings.targets == ["Kamala Harris"]


def test_to_env_round_trips(monkeypatch, tmp_path):
    original = Settings(
        home=tmp_path, kafka_partitions=4, targets=["A", "B"], kafka_sasl_mechanism="PLAIN"
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_every_listener_defaults_to_loopback():
    settings = Settings()
    assert settings.kafka.bootstrap.startswith("127.0.0.1:")
    assert settings.worker.web_host == settings.query.host == settings.dashboard.host == "127.0.0.1"
    assert isinstance(settings.home, Path)


def test_list_settings_take_commas_or_json(monkeypatch):
    monkeypatch.setenv("SWINGDIAL_TARGETS", "Donald Trump, Joe Biden")
    assert Settings().targets == ["Donald Trump", "Joe Biden"]
    monkeypatch.setenv("SWINGDIAL_TARGETS", '["Kamala Harris", "Elon Musk"]')
    assert Settings().targets == ["Kamala Harris", "Elon Musk"]


def test_secrets_are_hidden_but_reach_child_processes(monkeypatch, tmp_path):
    original = Settings(home=tmp_path, kafka_sasl_mechanism="PLAIN", kafka_sasl_password="s3cr3t")
    assert "s3cr3t" not in repr(original) and "s3cr3t" not in original.model_dump_json()
    assert original.display_values()["kafka_sasl_password"] == "***"
    assert original.kafka.client_config()["sasl_plain_password"] == "s3cr3t"
    env = original.to_env()
    assert env["SWINGDIAL_KAFKA_SASL_PASSWORD"] == "s3cr3t"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings().kafka.sasl_password.get_secret_value() == "s3cr3t"


def test_config_prints_lines_that_paste_back(tmp_path):
    """`swingdial config` output, sourced by a shell, gives the same settings (secret aside)."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "SWINGDIAL_HOME": str(tmp_path),
        "SWINGDIAL_TARGETS": "Donald Trump,Joe Biden",
        "SWINGDIAL_KAFKA_SASL_PASSWORD": "hunter2",
    }
    printed = subprocess.run(
        [sys.executable, "-m", "stream.cli", "config"], env=env, capture_output=True, text=True
    ).stdout
    assert "hunter2" not in printed
    assert "SWINGDIAL_TARGETS='Donald Trump,Joe Biden'" in printed.splitlines()
    script = "".join(f"export {line}\n" for line in printed.splitlines() if "PASSWORD" not in line)
    dump = "python -c 'from stream.config import Settings; print(Settings().model_dump_json())'"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWINGDIAL_")}
    again = subprocess.run(
        ["bash", "-c", script + sys.executable + dump[6:]],
        env=clean,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert again.returncode == 0, again.stderr
    expected = Settings(home=tmp_path, targets=["Donald Trump", "Joe Biden"])
    assert Settings.model_validate_json(again.stdout) == expected


def test_sections_read_their_own_variables(monkeypatch):
    monkeypatch.setenv("SWINGDIAL_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("SWINGDIAL_TOPIC_POSTS", "posts-x")
    monkeypatch.setenv("SWINGDIAL_WORKER_BATCH_SIZE", "128")
    monkeypatch.setenv("SWINGDIAL_DASHBOARD_MIN_POSTS_PER_POINT", "9")
    settings = Settings()
    assert settings.kafka.sasl_password.get_secret_value() == "pw"
    assert settings.topic.posts == "posts-x"
    assert settings.worker.batch_size == 128
    assert settings.dashboard.min_posts_per_point == 9
    assert settings.sink.batch_size == 2000  # a name in two sections stays apart


def test_flat_names_as_arguments_and_replace_keep_the_rest(monkeypatch):
    monkeypatch.setenv("SWINGDIAL_KAFKA_NODES", "3")
    settings = Settings(kafka_bootstrap="10.0.0.1:9092", sink_batch_size=10)
    assert (settings.kafka.bootstrap, settings.kafka.nodes) == ("10.0.0.1:9092", 3)
    changed = settings.replace(topic_posts="other", kafka_nodes=1)
    assert changed.topic.posts == "other" and changed.kafka.nodes == 1
    assert changed.kafka.bootstrap == "10.0.0.1:9092" and changed.sink.batch_size == 10
    assert settings.topic.posts == "posts"  # the original is untouched


def test_a_misspelt_or_retired_name_is_refused():
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="batch_size"):
        Settings(batch_size=8)  # the worker's batch size is worker_batch_size
    with pytest.raises(pydantic.ValidationError, match="bootstrapp"):
        Settings(kafka_bootstrapp="x:1")
