"""Set-up as a new user meets it: config errors that suggest the right name, YAML dates
that stay text, SQLite paths relative to the config file, and a port in use that is one
clear line with its own exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tollway.config import ConfigError, load_settings, settings_from_dict
from tollway.config.loader import parse_yaml

TOKEN = "setup-test-admin-token-0123456789"


def _tollway(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TOLLWAY_ADMIN_TOKEN": TOKEN, **(env_extra or {})}
    if "PYTHONPATH" in os.environ:  # a checkout tested with another checkout's virtual environment
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([sys.executable, "-m", "tollway", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize(("raw", "path", "suggestion"), [
    ({"counters": {"backnd": "redis"}}, "counters.backnd", "did you mean 'backend'?"),
    ({"databse_url": "sqlite:///x.db"}, "databse_url", "did you mean 'database_url'?"),
    ({"providers": {"o": {"type": "openai", "keys": [{"value": "k", "wieght": 2}]}}},
     "providers.o.keys[0].wieght", "did you mean 'weight'?"),
    ({"governance": {"virtual_keys": [{"id": "k", "name": "k", "rate_limit": {"request_max_limt": 5,
                                                                            "request_reset_duration": "1m"}}]}},
     "governance.virtual_keys[0].rate_limit.request_max_limt", "did you mean 'request_max_limit'?"),
])
def test_an_unknown_field_names_the_nearest_valid_one(raw: dict, path: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw)
    assert any(where == path and suggestion in problem for where, problem in caught.value.problems), caught.value


def test_an_unknown_field_with_no_near_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_dict({"counters": {"zzz": 1}})
    assert "valid fields here: backend, url, on_failure, timeout_ms" in str(caught.value)


def test_yaml_dates_and_times_stay_the_text_written() -> None:
    raw = parse_yaml("providers:\n  azure: {type: azure, base_url: https://x.openai.azure.com, api_version: 2024-06-01,\n"
                     "    keys: [{value: k}], headers: {anthropic-version: 2023-06-01, at: 2024-01-01T10:00:00Z}}\n")
    provider = settings_from_dict(raw).providers["azure"]
    assert provider.api_version == "2024-06-01"
    assert provider.headers == {"anthropic-version": "2023-06-01", "at": "2024-01-01T10:00:00Z"}


def test_a_number_or_boolean_where_text_is_due_says_to_quote_it() -> None:
    raw = parse_yaml("providers:\n  azure: {type: azure, base_url: https://x, api_version: 2024,\n"
                     "    keys: [{value: k}], deployments: {gpt-4o: no}}\n")
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw)
    problems = dict(caught.value.problems)
    assert "put it in quotes" in problems["providers.azure.api_version"]
    assert "bool False" in problems["providers.azure.deployments.gpt-4o"]


def test_a_relative_sqlite_path_is_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "tollway"
    folder.mkdir(parents=True)
    (folder / "tollway.yaml").write_text("database_url: sqlite:///data/tollway.db\n")
    (folder / "defaults.yaml").write_text("log_level: info\n")
    assert load_settings(folder / "tollway.yaml").database_url == f"sqlite:///{folder}/data/tollway.db"
    assert load_settings(folder / "defaults.yaml").database_url == f"sqlite:///{folder}/tollway.db"
    for url in ("sqlite:////abs/x.db", "sqlite:///:memory:", "postgresql://u@h/db"):
        (folder / "other.yaml").write_text(f"database_url: '{url}'\n")
        assert load_settings(folder / "other.yaml").database_url == url


def test_the_database_is_created_next_to_the_config_whatever_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "conf" / "tollway.yaml").write_text("database_url: sqlite:///tollway.db\n")
    result = _tollway("db", "upgrade", "--config", "../conf/tollway.yaml", cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "conf" / "tollway.db").exists() and not (tmp_path / "elsewhere" / "tollway.db").exists()


def test_serve_on_a_port_in_use_is_one_line_and_exit_code_4(tmp_path: Path) -> None:
    (tmp_path / "tollway.yaml").write_text("database_url: sqlite:///tollway.db\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _tollway("serve", "--config", "tollway.yaml", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        (f"cannot listen on 127.0.0.1:{port}: the port is already in use (another gateway or program listens there); "
         "stop it or choose --port")]
    assert not (tmp_path / "tollway.db").exists()  # checked before anything is written


def test_config_check_reports_the_suggestion_and_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "tollway.yaml").write_text("counters: {backnd: redis}\n")
    result = _tollway("config", "check", "--config", "tollway.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "tollway.yaml: counters.backnd: unknown field 'backnd'; did you mean 'backend'?" in result.stderr


def test_an_unknown_reference_names_the_nearest_id() -> None:
    raw = {"providers": {"openai": {"type": "openai", "keys": [{"value": "k"}]}},
           "governance": {"customers": [{"id": "acme", "name": "Acme"}],
                          "teams": [{"id": "search", "name": "Search", "customer_id": "acm"}],
                          "model_configs": [{"model_name": "gpt-4o-mini", "provider": "opnai"}]}}
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(raw)
    problems = dict(caught.value.problems)
    assert problems["governance.teams[0].customer_id"] == "unknown customer 'acm'; did you mean 'acme'?"
    assert problems["governance.model_configs[0].provider"] == "unknown provider 'opnai'; did you mean 'openai'?"
