"""https:// origins: a round trip through TLS with a self-signed certificate made at
test time, and a certificate the client must refuse."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.unit.http.servers import fetch, keep_alive, ok, serve
from tollway.providers.http import HTTPClient, UpstreamConnectError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


async def test_tls_round_trip_with_a_custom_ca(certificate: tuple[Path, Path]) -> None:
    server = await serve(keep_alive(lambda n, body: ok(b"secret " + body)), tls=_server_context(certificate))
    client = HTTPClient(ssl_context=ssl.create_default_context(cafile=str(certificate[0])))
    try:
        for _ in range(3):
            response, body = await fetch(client, server.origin, b"hello")
            assert (response.status, body) == (200, b"secret hello")
        assert server.accepts == 1  # TLS connections are pooled too
    finally:
        await client.close()
        await server.close()


async def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    server = await serve(keep_alive(lambda n, body: ok()), tls=_server_context(certificate))
    client = HTTPClient()  # the system's CAs: they never signed this certificate
    try:
        with pytest.raises(UpstreamConnectError) as caught:
            await fetch(client, server.origin, total=5)
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        assert client.pool(server.origin).open_connections == 0
    finally:
        await client.close()
        await server.close()
