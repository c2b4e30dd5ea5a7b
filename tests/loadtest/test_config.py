"""Configuration from flags and environment variables (how a Kubernetes Job configures the tool).
No stack needed."""

import pytest

from postwire_loadtest.cli import build_parser, config_from_args
from postwire_loadtest.config import Config, parse_duration_ms
from postwire_loadtest.netutil import default_source_addresses, parse_source_addresses


def config(argv, monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return config_from_args(build_parser().parse_args(argv))


def test_environment_configures_a_job(monkeypatch, tmp_path):
    cfg = config(
        [],
        monkeypatch,
        POSTWIRE_URL="http://postwire-nginx:8080",
        POSTWIRE_PASSWORD="s3cret",
        LOADTEST_SUBSCRIBERS="20000",
        LOADTEST_RATE="2",
        LOADTEST_DURATION="60s",
        LOADTEST_MAX_P99="750ms",
        LOADTEST_MIN_DELIVERY="1.0",
        LOADTEST_OUT=str(tmp_path),
    )
    assert cfg.graphql_url == "http://postwire-nginx:8080/graphql"
    assert cfg.ws_url == "ws://postwire-nginx:8080/wsgraphql"
    assert (cfg.password, cfg.subscribers, cfg.publishes) == ("s3cret", 20000, 120)
    assert (cfg.max_p99_ms, cfg.min_delivery) == (750.0, 1.0)
    # 20,000 sockets do not fit one process under a 20,000 fd limit: spread over workers.
    assert cfg.workers == 3
    assert "s3cret" not in str(cfg.public_dict())


def test_flags_win_over_environment(monkeypatch, tmp_path):
    cfg = config(
        ["--url", "https://example.test", "-n", "5", "--out", str(tmp_path)],
        monkeypatch,
        POSTWIRE_URL="http://ignored:1",
        LOADTEST_SUBSCRIBERS="99",
    )
    assert (cfg.url, cfg.ws_url, cfg.subscribers) == ("https://example.test", "wss://example.test/wsgraphql", 5)


def test_durations_and_source_addresses():
    assert parse_duration_ms("500ms") == 500 and parse_duration_ms("1.5s") == 1500 and parse_duration_ms("250") == 250
    assert parse_source_addresses("127.0.0.2-127.0.0.4,127.0.1.9") == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.1.9",
    ]
    assert len(default_source_addresses("ws://127.0.0.1:8080/wsgraphql")) == 64
    assert default_source_addresses("ws://localhost:8080/wsgraphql")[0] == "127.0.0.2"
    assert default_source_addresses("wss://postwire.example/wsgraphql") == []


def test_an_idle_window_is_counted_in_the_run_and_cannot_be_negative():
    assert Config(subscribers=10, publishes=5, idle=20).expected_seconds() == pytest.approx(
        Config(subscribers=10, publishes=5).expected_seconds() + 20
    )
    with pytest.raises(ValueError):
        Config(subscribers=10, publishes=5, idle=-1)


def test_drop_hook_is_validated():
    with pytest.raises(ValueError):
        Config(subscribers=10, publishes=5, drop_subscribers=3)
    with pytest.raises(ValueError):
        Config(subscribers=10, publishes=5, drop_subscribers=10, drop_after_publish=2)
