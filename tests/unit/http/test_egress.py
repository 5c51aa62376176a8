"""Choosing a forward proxy: URLs with credentials, NO_PROXY by curl's rules, precedence."""

from __future__ import annotations

import base64

import pytest

from tollway.config import ConfigError, settings_from_dict
from tollway.providers.http.egress import EgressProxy, bypasses_proxy, choose_proxy, tls_context


def test_proxy_urls_with_and_without_credentials() -> None:
    assert EgressProxy.parse("http://proxy.corp:3128") == EgressProxy("proxy.corp", 3128)
    assert EgressProxy.parse("proxy.corp:8080") == EgressProxy("proxy.corp", 8080)
    assert EgressProxy.parse("http://proxy.corp") == EgressProxy("proxy.corp", 80)
    with_user = EgressProxy.parse("http://al%40ice:p%3Ass@proxy.corp:3128")
    assert with_user.authorization == "Basic " + base64.b64encode(b"al@ice:p:ss").decode()
    assert "p:ss" not in repr(with_user) and "ice" not in repr(with_user)
    for bad in ("https://proxy.corp:3128", "socks5://proxy:1080", "http://:3128"):
        with pytest.raises(ValueError):
            EgressProxy.parse(bad)


@pytest.mark.parametrize(("host", "port", "no_proxy", "bypass"), [
    ("api.openai.com", 443, "openai.com", True),
    ("api.openai.com", 443, ".openai.com", True),
    ("openai.com", 443, ".openai.com", True),
    ("notopenai.com", 443, "openai.com", False),
    ("api.openai.com", 443, "example.com, openai.com", True),
    ("api.openai.com", 443, "example.com openai.com", True),
    ("api.openai.com", 443, "*", True),
    ("api.openai.com", 443, "openai.com:8443", False),
    ("api.openai.com", 8443, "openai.com:8443", True),
    ("10.1.2.3", 443, "10.0.0.0/8", True),
    ("11.1.2.3", 443, "10.0.0.0/8", False),
    ("127.0.0.1", 80, "127.0.0.1", True),
    ("::1", 80, "::1", True),
    ("::1", 80, "[::1]:80", True),
    ("API.OpenAI.com", 443, "openai.COM", True),
    ("api.openai.com", 443, "", False),
])
def test_no_proxy_follows_curls_rules(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_a_providers_own_proxy_wins_over_the_environment() -> None:
    env = {"http_proxy": "http://env-proxy:1", "https_proxy": "http://env-tls-proxy:2", "no_proxy": None}
    assert choose_proxy("https://api.openai.com/v1", None, **env) == EgressProxy("env-tls-proxy", 2)
    assert choose_proxy("http://10.0.0.5:8000/v1", None, **env) == EgressProxy("env-proxy", 1)
    assert choose_proxy("https://api.openai.com/v1", "http://own:3", **env) == EgressProxy("own", 3)
    assert choose_proxy("https://api.openai.com/v1", "none", **env) is None
    assert choose_proxy("https://api.openai.com/v1", None, None, None, None) is None
    assert choose_proxy("https://api.openai.com/v1", None, "http://env-proxy:1", None, None) is None  # no https proxy
    assert choose_proxy("https://api.openai.com/v1", None, None, "http://p:2", "openai.com") is None


def test_the_loader_reads_the_proxy_variables_of_the_environment() -> None:
    upper = settings_from_dict({}, environ={"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "internal"})
    assert (upper.egress.https_proxy, upper.egress.http_proxy, upper.egress.no_proxy) == ("http://p:3128", None, "internal")
    lower = settings_from_dict({}, environ={"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"})
    assert lower.egress.https_proxy == "http://lower:1"
    from_file = settings_from_dict({"egress": {"https_proxy": "http://file:1"}}, environ={"HTTPS_PROXY": "http://env:2"})
    assert from_file.egress.https_proxy == "http://file:1"


@pytest.mark.parametrize(("provider", "field"), [
    ({"proxy": "socks5://p:1"}, "proxy"),
    ({"proxy": "http://p:notaport"}, "proxy"),
    ({"http_client": "aiohttp"}, "http_client was removed"),
    ({"client_key": "/k.pem"}, "client_key needs client_cert"),
])
def test_bad_egress_settings_are_refused_naming_the_field(provider: dict, field: str) -> None:
    config = {"providers": {"openai": {"type": "openai", "keys": [{"value": "k"}], **provider}}}
    with pytest.raises(ConfigError) as error:
        settings_from_dict(config, environ={})
    assert "providers.openai" in str(error.value) and field in str(error.value)


def test_bad_proxy_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict({}, environ={"HTTPS_PROXY": "socks5://p:1"})
    assert "egress.https_proxy" in str(error.value)


def test_no_tls_customisation_means_the_clients_default_context() -> None:
    assert tls_context(None, None, None) is None
