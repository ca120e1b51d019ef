from pathlib import Path

from stream.config import Settings


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SWINGDIAL_KAFKA_BOOTSTRAP", "kafka.example:9999")
    monkeypatch.setenv("SWINGDIAL_PARTITIONS", "3")
    monkeypatch.setenv("SWINGDIAL_HOME", str(tmp_path))
    monkeypatch.setenv("SWINGDIAL_TARGETS", '["Kamala Harris"]')
    settings = Settings()
    assert settings.kafka_client_config()["bootstrap_servers"] == ["kafka.example:9999"]
    assert settings.partitions == 3
    assert settings.db_path == tmp_path / "swingdial.duckdb"
    assert settings.targets == ["Kamala Harris"]


def test_to_env_round_trips(monkeypatch, tmp_path):
    original = Settings(
        home=tmp_path, partitions=4, targets=["A", "B"], kafka_sasl_mechanism="PLAIN"
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_every_listener_defaults_to_loopback():
    settings = Settings()
    assert settings.kafka_bootstrap.startswith("127.0.0.1:")
    assert settings.worker_web_host == settings.query_host == settings.dashboard_host == "127.0.0.1"
    assert isinstance(settings.home, Path)
