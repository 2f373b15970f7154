"""End-to-end tests of JWT bearer auth: RS256 against a PEM key, ES256 against a JWKS file, and
every way a token can be wrong. Keys are generated here with ``cryptography``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar.testing import TestClient

from entrypoints.config.container import create_container
from entrypoints.config.settings import ConfigurationError, Settings
from entrypoints.http.app import create_app
from entrypoints.http.security.jwt_bearer import JwtVerifier
from tests.e2e.conftest import TOKEN
from tests.e2e.helpers import assert_problem
from tests.factories import experiment_body

ISSUER, AUDIENCE = "https://id.example.com/", "experiments"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now, "scope": "read"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def make_jwt_client(database_url: str) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(**jwt_settings: Any) -> TestClient:
        settings = Settings(
            database_url=database_url, api_tokens=(TOKEN,), jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **jwt_settings
        )
        client = TestClient(create_app(create_container(settings)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def pem_client(make_jwt_client, rsa_key, tmp_path: Path) -> TestClient:  # type: ignore[no-untyped-def]
    path = tmp_path / "jwt.pem"
    path.write_bytes(public_pem(rsa_key))
    return make_jwt_client(jwt_public_key_file=str(path))


def call(client: TestClient, token: str, method: str = "GET", path: str = "/experiments", **kw: Any):  # type: ignore[no-untyped-def]
    return client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


def test_a_valid_rs256_token_is_accepted(pem_client: TestClient, rsa_key) -> None:  # type: ignore[no-untyped-def]
    assert call(pem_client, jwt.encode(claims(), rsa_key, algorithm="RS256")).status_code == 200
    # A little clock skew is forgiven: expired five seconds ago.
    late = claims(exp=int(time.time()) - 5)
    assert call(pem_client, jwt.encode(late, rsa_key, algorithm="RS256")).status_code == 200


def test_api_tokens_still_work_beside_jwt(pem_client: TestClient) -> None:
    assert call(pem_client, TOKEN).status_code == 200


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong aud", "wrong iss", "no exp", "no sub", "no aud", "wrong key", "alg none", "hs256 confusion", "garbage", "nul in sub"],
)
def test_a_bad_token_is_401(pem_client: TestClient, rsa_key, other_rsa_key, case: str) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time())
    tokens: dict[str, Callable[[], str]] = {
        "expired": lambda: jwt.encode(claims(exp=now - 120), rsa_key, algorithm="RS256"),
        "wrong aud": lambda: jwt.encode(claims(aud="someone-else"), rsa_key, algorithm="RS256"),
        "wrong iss": lambda: jwt.encode(claims(iss="https://evil.example.com/"), rsa_key, algorithm="RS256"),
        "no exp": lambda: jwt.encode(claims(exp=None), rsa_key, algorithm="RS256"),
        "no sub": lambda: jwt.encode(claims(sub=None), rsa_key, algorithm="RS256"),
        "no aud": lambda: jwt.encode(claims(aud=None), rsa_key, algorithm="RS256"),
        "wrong key": lambda: jwt.encode(claims(), other_rsa_key, algorithm="RS256"),
        "alg none": lambda: jwt.encode(claims(scope="admin"), None, algorithm="none"),
        "hs256 confusion": lambda: hs256_signed_with(public_pem(rsa_key), claims(scope="admin")),
        "garbage": lambda: "eyJhbGciOiJSUzI1NiJ9.not-json.sig",
        "nul in sub": lambda: jwt.encode(claims(sub="a\x00b"), rsa_key, algorithm="RS256"),
    }
    response = call(pem_client, tokens[case]())
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def hs256_signed_with(secret: bytes, payload: dict[str, Any]) -> str:
    """Signed by hand: PyJWT itself refuses to use a PEM public key as an HMAC secret."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_a_token_without_the_scope_is_403(pem_client: TestClient, rsa_key) -> None:  # type: ignore[no-untyped-def]
    token = jwt.encode(claims(scope="read openid"), rsa_key, algorithm="RS256")
    problem = assert_problem(call(pem_client, token, "POST", "/experiments", json=experiment_body("j", [("a", 50), ("b", 50)])), 403)
    assert "'admin'" in problem["detail"]
    assert_problem(call(pem_client, token, "GET", "/experiments/x/assignment/u"), 403)


def test_scopes_from_a_list_claim_and_the_actor_is_jwt_sub(
    make_jwt_client, rsa_key, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "jwt.pem"
    path.write_bytes(public_pem(rsa_key))
    client = make_jwt_client(jwt_public_key_file=str(path), jwt_scopes_claim="scp")
    token = jwt.encode(claims(scope=None, scp=["admin"], sub="svc-deploy"), rsa_key, algorithm="RS256")
    created = call(client, token, "POST", "/experiments", json=experiment_body("by-jwt", [("a", 50), ("b", 50)]))
    assert created.status_code == 201, created.text
    trail = call(client, TOKEN, "GET", "/audit").json()
    assert [(e["actor"], e["action"]) for e in trail["items"]] == [("jwt:svc-deploy", "experiment.created")]
    # The default claim name is not read when another is configured.
    assert_problem(call(client, jwt.encode(claims(scope="admin"), rsa_key, algorithm="RS256"), "GET", "/audit"), 403)


def test_es256_from_a_jwks_file_selected_by_kid(make_jwt_client, ec_key, rsa_key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}))
    client = make_jwt_client(jwt_jwks_file=str(path))
    good = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "k1"})
    assert call(client, good).status_code == 200
    unknown_kid = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "k2"})
    no_kid = jwt.encode(claims(), ec_key, algorithm="ES256")
    rs256_same_kid = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    for token in (unknown_kid, no_kid, rs256_same_kid):
        assert_problem(call(client, token), 401)


def test_a_key_secret_with_jwt_enabled_is_still_a_key(pem_client: TestClient) -> None:
    made = call(pem_client, TOKEN, "POST", "/keys", json={"name": "k", "scopes": ["read"]}).json()
    assert call(pem_client, made["key"]).status_code == 200


# ---- configuration errors stop the start with one clear line


def settings_with(**values: Any) -> Settings:
    return Settings(database_url="memory://", api_tokens=("t",), **values)


def test_configuration_errors(tmp_path: Path, rsa_key) -> None:  # type: ignore[no-untyped-def]
    pem = tmp_path / "ok.pem"
    pem.write_bytes(public_pem(rsa_key))
    weak = tmp_path / "weak.pem"
    weak.write_bytes(public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    hmac_jwks = tmp_path / "oct.json"
    hmac_jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64(b"secret"), "kid": "h"}]}))
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(public_pem(ec.generate_private_key(ec.SECP384R1())))
    both = dict(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    cases = {
        "missing file": settings_with(jwt_public_key_file=str(tmp_path / "none.pem"), **both),
        "not pem": settings_with(jwt_public_key_file=str(not_pem), **both),
        "weak rsa": settings_with(jwt_public_key_file=str(weak), **both),
        "p-384": settings_with(jwt_public_key_file=str(p384), **both),
        "hmac in jwks": settings_with(jwt_jwks_file=str(hmac_jwks), **both),
        "jwks not json": settings_with(jwt_jwks_file=str(not_pem), **both),
        "no issuer": settings_with(jwt_public_key_file=str(pem), jwt_audience=AUDIENCE),
        "no audience": settings_with(jwt_public_key_file=str(pem), jwt_issuer=ISSUER),
        "no key": settings_with(**both),
        "both files": settings_with(jwt_public_key_file=str(pem), jwt_jwks_file=str(hmac_jwks), **both),
    }
    for case, settings in cases.items():
        with pytest.raises(ConfigurationError) as caught:
            JwtVerifier.from_settings(settings)
        assert "\n" not in str(caught.value) and str(caught.value), case
    assert JwtVerifier.from_settings(settings_with()) is None
    assert JwtVerifier.from_settings(settings_with(jwt_public_key_file=str(pem), **both)) is not None
    with pytest.raises(ConfigurationError):
        create_app(create_container(settings_with(jwt_issuer=ISSUER)))


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {"JWT_PUBLIC_KEY_FILE": "/k.pem", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a", "JWT_SCOPES_CLAIM": "scp", "KEY_CACHE_TTL_SECONDS": "0.5"}
    )
    assert (settings.jwt_public_key_file, settings.jwt_issuer, settings.jwt_audience) == ("/k.pem", "i", "a")
    assert settings.jwt_scopes_claim == "scp" and settings.key_cache_ttl_seconds == 0.5
    defaults = Settings.from_env({})
    assert defaults.jwt_scopes_claim == "scope" and defaults.key_cache_ttl_seconds == 5 and not defaults.jwt_enabled
    for bad in ("-1", "soon", "1e9"):
        with pytest.raises(ConfigurationError):
            Settings.from_env({"KEY_CACHE_TTL_SECONDS": bad})
