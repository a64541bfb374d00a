"""Whether a version's image exists, asked of a registry speaking the Docker Registry HTTP API v2 with GHCR's token
flow (tests/fake_registry.py: no registry can be reached from here)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.deploy.images import MANIFEST_TYPES, ImageReference, check_image, docker_credentials
from infra.deploy.servers import free_port
from tests.fake_registry import FakeRegistry


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no credentials of this machine's
    with FakeRegistry(users={"release-bot": "ghp_pat"}, private={"acme/private-app"}) as fake:
        fake.push("acme/app", "1a2b3c4")
        fake.push("acme/private-app", "1a2b3c4")
        yield fake


def test_an_existing_tag_is_found_through_the_token_flow_with_the_manifest_types(registry: FakeRegistry) -> None:
    found = check_image(f"{registry.host}/acme/app:1a2b3c4")
    assert found.exists is True and "sha256:" in found.detail
    first, token, second = registry.requests
    assert (first.method, first.path, "Authorization" in first.headers) == (
        "HEAD",
        "/v2/acme/app/manifests/1a2b3c4",
        False,
    )
    assert (token.method, token.path) == ("GET", "/token")
    assert token.query == {"service": "fake-registry", "scope": "repository:acme/app:pull"}
    assert "Authorization" not in token.headers  # a public image: an anonymous token
    assert second.method == "HEAD" and second.headers["Authorization"].startswith("Bearer ")
    assert set(MANIFEST_TYPES) <= {part.strip() for part in second.headers["Accept"].split(",")}


def test_a_tag_never_pushed_is_missing(registry: FakeRegistry) -> None:
    found = check_image(f"{registry.host}/acme/app:deadbee")
    assert found.exists is False
    assert found.detail == f"registry {registry.host} has no manifest deadbee of acme/app"


def test_a_private_image_needs_the_docker_login_credentials(registry: FakeRegistry, tmp_path: Path) -> None:
    image = f"{registry.host}/acme/private-app:1a2b3c4"
    anonymous = check_image(image)
    assert anonymous.exists is None  # not readable from here: cannot tell, never reported missing
    assert "does not let this machine read acme/private-app (without credentials, HTTP 403)" in anonymous.detail
    assert f"`docker login {registry.host}`" in anonymous.detail
    # what `docker login` / docker/login-action write
    (tmp_path / "docker-config").mkdir()
    auth = base64.b64encode(b"release-bot:ghp_pat").decode()
    (tmp_path / "docker-config" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    assert docker_credentials(registry.host) == ("release-bot", "ghp_pat")
    assert check_image(image).exists is True
    token = registry.calls("GET")[-1]
    assert token.headers["Authorization"] == "Basic " + auth
    assert check_image(f"{registry.host}/acme/private-app:0000000").exists is False
    wrong = check_image(image, credentials=("release-bot", "wrong"))
    assert wrong.exists is None and "refused a pull token (HTTP 401)" in wrong.detail


def test_an_unreachable_registry_cannot_tell() -> None:
    found = check_image(f"127.0.0.1:{free_port()}/acme/app:1a2b3c4", timeout=2)
    assert found.exists is None and "not reachable" in found.detail


@pytest.mark.parametrize(
    ("image", "registry", "repository", "reference", "url"),
    [
        ("ghcr.io/acme/app:1a2b3c4", "ghcr.io", "acme/app", "1a2b3c4", "https://ghcr.io/v2/acme/app/manifests/1a2b3c4"),
        ("redis:7", "docker.io", "library/redis", "7", "https://registry-1.docker.io/v2/library/redis/manifests/7"),
        ("acme/app", "docker.io", "acme/app", "latest", "https://registry-1.docker.io/v2/acme/app/manifests/latest"),
        (
            "localhost:5000/a/b@sha256:ab",
            "localhost:5000",
            "a/b",
            "sha256:ab",
            "http://localhost:5000/v2/a/b/manifests/sha256:ab",
        ),
        ("10.0.0.7:5000/a/b:v1", "10.0.0.7:5000", "a/b", "v1", "https://10.0.0.7:5000/v2/a/b/manifests/v1"),
    ],
)
def test_references_split_as_docker_splits_them(
    image: str, registry: str, repository: str, reference: str, url: str
) -> None:
    ref = ImageReference.parse(image)
    assert (ref.registry, ref.repository, ref.reference, ref.manifest_url) == (registry, repository, reference, url)


def test_a_manifest_redirect_to_another_host_gets_no_credentials(registry: FakeRegistry) -> None:
    """A registry may send a pull elsewhere (blob storage): the Bearer pull token stays with the registry, as
    Docker's client keeps it; a redirect on the registry itself keeps it (and stays a HEAD)."""
    with FakeRegistry(address="127.0.0.2") as elsewhere:
        elsewhere.push("acme/private-app", "1a2b3c4")
        moved = "/v2/acme/private-app/manifests/1a2b3c4"
        registry.redirects[moved] = f"http://{elsewhere.host}{moved}"
        found = check_image(f"{registry.host}/acme/private-app:1a2b3c4", credentials=("release-bot", "ghp_pat"))
        assert [(r.method, r.path) for r in elsewhere.requests] == [("HEAD", moved)]
        assert "Authorization" not in elsewhere.requests[0].headers
        assert found.exists is None and "HTTP 401" in found.detail  # elsewhere wants its own token: cannot tell
    registry.redirects.clear()
    registry.push("acme/app", "v2")
    registry.redirects["/v2/acme/app/manifests/latest"] = f"http://{registry.host}/v2/acme/app/manifests/v2"
    assert check_image(f"{registry.host}/acme/app:latest").exists is True
    last = registry.requests[-1]
    assert (last.method, last.path) == ("HEAD", "/v2/acme/app/manifests/v2")
    assert last.headers["Authorization"].startswith("Bearer ")


def test_a_token_request_is_never_redirected(registry: FakeRegistry) -> None:
    """The token request carries the registry's credentials (Basic): a redirect is not followed at all."""
    with FakeRegistry(address="127.0.0.2") as elsewhere:
        registry.redirects["/token"] = f"http://{elsewhere.host}/token"
        found = check_image(f"{registry.host}/acme/private-app:1a2b3c4", credentials=("release-bot", "ghp_pat"))
        assert elsewhere.requests == []
    assert found.exists is None
    assert found.detail.startswith(f"registry {registry.host}: the token service redirects its token request (")
    assert f"-> HTTP 307 http://{elsewhere.host}/token): not followed" in found.detail


def test_a_plain_http_token_service_elsewhere_is_not_asked(registry: FakeRegistry) -> None:
    """Only a token service on this machine may be plain HTTP: credentials never travel in clear."""
    registry.realm = "http://ws-token-service.invalid/token"
    found = check_image(f"{registry.host}/acme/app:1a2b3c4", credentials=("release-bot", "ghp_pat"), timeout=5)
    assert found.exists is None
    assert found.detail == (
        f"registry {registry.host}: its token service http://ws-token-service.invalid/token is plain HTTP on another "
        "machine: not asked, so neither credentials nor a pull token travel in clear (a registry's token service is "
        "HTTPS)"
    )
    registry.realm = "ftp://127.0.0.1/token"
    assert (
        "its token service 'ftp://127.0.0.1/token' is not an HTTP(S) URL"
        in check_image(f"{registry.host}/acme/app:1a2b3c4").detail
    )
    assert [r.path for r in registry.calls("GET")] == []  # no token requested of anyone
    registry.realm = f"http://localhost:{registry.server.server_address[1]}/token"  # loopback: asked
    assert check_image(f"{registry.host}/acme/app:1a2b3c4").exists is True


@pytest.mark.parametrize("body", [b'["not", "an object"]', b"null", b"<html>moved</html>", b'{"token": 7}'])
def test_a_token_service_answer_without_a_token_cannot_tell(registry: FakeRegistry, body: bytes) -> None:
    registry.token_body = body
    found = check_image(f"{registry.host}/acme/app:1a2b3c4")
    assert found.exists is None
    assert found.detail == (
        f"registry {registry.host}: its token service http://{registry.host}/token answered without a token (no JSON "
        'object with a "token")'
    )


def test_a_port_that_does_not_speak_http_cannot_tell() -> None:
    """An SSH server where the registry should be: http.client's BadStatusLine is no OSError, and no traceback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def banner() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(1000)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        thread = threading.Thread(target=banner, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        found = check_image(f"127.0.0.1:{port}/acme/app:1a2b3c4", timeout=5)
        thread.join(5)
    assert found.exists is None
    assert found.detail.startswith(
        f"registry 127.0.0.1:{port} did not answer as an HTTP registry at "
        f"http://127.0.0.1:{port}/v2/acme/app/manifests/1a2b3c4: BadStatusLine("
    )


def test_a_registry_with_a_port_that_is_no_number_cannot_tell() -> None:
    found = check_image("127.0.0.1:abc/acme/app:1a2b3c4", timeout=2)
    assert found.exists is None and "nonnumeric port: 'abc'" in found.detail


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 that this process trusts (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert, private = tmp_path / "registry.crt", tmp_path / "registry.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, private)
    return context


def test_a_redirect_from_https_to_http_is_not_followed(tls: ssl.SSLContext) -> None:
    from infra.deploy import images

    with FakeRegistry(tls=tls) as secure, FakeRegistry(address="127.0.0.2") as plain:
        secure.push("acme/app", "v1")
        secure.tokens["pull-token"] = None
        url = f"https://{secure.host}/v2/acme/app/manifests/v1"
        assert images._head(url, "Bearer pull-token", 5)[0] == 200  # HTTPS to this registry works
        path = "/v2/acme/app/manifests/v1"
        secure.redirects[path] = f"http://{plain.host}{path}"
        refused: Exception | None = None
        try:
            images._head(url, "Bearer pull-token", 5)
        except Exception as exc:  # what it raised is asserted below, once nothing reached the plain-HTTP host
            refused = exc
        assert plain.requests == []
    assert isinstance(refused, images.NotChecked) and str(refused) == (
        f"it redirects from HTTPS to plain HTTP ({url} -> HTTP 307 http://{plain.host}{path}): not followed"
    )
