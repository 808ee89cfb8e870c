"""Sign-in with OpenID Connect (authlib's client in the web app), against a small provider
run here, and the gateway of `make run`: a staff member's ID token names their Broen staff
id and organisation and the web app then acts for them through the JWT-bearer grant; a
citizen's ID token is exchanged at the gateway (RFC 8693) for a citizen token. Also what
production refuses: plain http, and the demo sign-in."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from shared.settings import ConfigurationError
from tests.system.test_make_run import _free_port
from tests.web.conftest import DemoWeb
from web.app import create_app
from web.keys import init_web_keys
from web.settings import OidcProvider, StaffOidcProvider, WebSettings

STAFF_CLIENT = "broen-web-staff"
CITIZEN_CLIENT = "broen-web"  # the demo identity provider's audience, which the gateway trusts


class Provider:
    """An OpenID Connect provider that signs in whoever `person` says, without asking."""

    def __init__(self, issuer: str, key: Any, alg: str) -> None:
        self.issuer, self.key, self.alg = issuer, key, alg
        self.person: dict[str, Any] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.metadata),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def metadata(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [self.alg],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def authorize(self, request: Request) -> RedirectResponse:
        query = request.query_params
        code = secrets.token_urlsafe(16)
        self._codes[code] = {"nonce": query.get("nonce"), "client_id": query["client_id"]}
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return RedirectResponse(back, status_code=302)

    async def token(self, request: Request) -> JSONResponse:
        form = await request.form()
        grant = self._codes.pop(str(form["code"]))
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant["client_id"],
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 120,
            "nonce": grant["nonce"],
            **self.person,
        }
        signed = jwt.encode({"alg": self.alg, "kid": self.key.kid}, claims, self.key, [self.alg])
        return JSONResponse(
            {"access_token": "opaque", "token_type": "Bearer", "expires_in": 60, "id_token": signed}
        )

    async def jwks(self, request: Request) -> JSONResponse:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))


@pytest.fixture(scope="module")
def providers(demo_web: DemoWeb) -> Iterator[tuple[Provider, Provider]]:
    staff = Provider("https://login.example.no", RSAKey.generate_key(2048, {"kid": "s1"}), "RS256")
    # The citizens' provider signs as the dev gateway's trusted demo identity provider.
    demo_key = json.loads((demo_web.workdir / "var/demo/demo-idp.private.jwk.json").read_text())
    citizen = Provider(f"{demo_web.web_url}/demo-idp", OKPKey.import_key(demo_key), "Ed25519")
    servers = []
    for provider in (staff, citizen):
        server = uvicorn.Server(
            uvicorn.Config(provider.app, host="127.0.0.1", port=provider.port, log_level="error")
        )
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
    for provider in (staff, citizen):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{provider.url}/jwks", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
    yield staff, citizen
    for server in servers:
        server.should_exit = True


def _settings(demo_web: DemoWeb, staff: Provider, citizen: Provider) -> WebSettings:
    var = demo_web.workdir / "var"
    return WebSettings(
        env="dev",
        keys_dir=var / "keys",
        gateway_url=demo_web.gateway_url,
        public_url="http://testserver",
        staff_clients={s["orgnr"]: f"broen-web-{s['orgnr']}" for s in _demo(demo_web)["staff"]},
        citizen_client="broen-web-innbygger",
        staff_oidc=StaffOidcProvider(
            metadata_url=f"{staff.url}/.well-known/openid-configuration",
            client_id=STAFF_CLIENT,
            client_secret="s3cret",
        ),
        citizen_oidc=OidcProvider(
            metadata_url=f"{citizen.url}/.well-known/openid-configuration",
            client_id=CITIZEN_CLIENT,
            client_secret="s3cret",
        ),
        demo_people_file=Path("/nonexistent"),
    )


def _demo(demo_web: DemoWeb) -> dict[str, Any]:
    people: dict[str, Any] = json.loads(
        (demo_web.workdir / "var/demo/web-sign-in.json").read_text()
    )
    return people


def _sign_in(client: TestClient, kind: str) -> httpx.Response:
    """The browser's round trip: to the provider, which signs in at once, and back."""
    started = client.get(f"/logg-inn/{kind}", follow_redirects=False)
    assert started.status_code in (302, 303), started.text
    location = started.headers["location"]
    assert "code_challenge=" in location  # PKCE
    at_provider = httpx.get(location, follow_redirects=False)
    back = urlsplit(at_provider.headers["location"])
    assert back.path == f"/logg-inn/{kind}/ferdig"
    return client.get(f"{back.path}?{back.query}", follow_redirects=True)


def test_staff_sign_in_with_openid_connect_acts_for_the_staff_member(
    demo_web: DemoWeb, providers: tuple[Provider, Provider]
) -> None:
    staff_provider, citizen_provider = providers
    vera = next(s for s in _demo(demo_web)["staff"] if s["name"] == "Vera Veileder")
    staff_provider.person = {
        "broen_staff_id": vera["id"],
        "orgnr": vera["orgnr"],
        "name": "Vera Veileder",
    }
    with TestClient(create_app(_settings(demo_web, staff_provider, citizen_provider))) as client:
        page = _sign_in(client, "ansatt")
        assert page.status_code == 200
        assert urlsplit(str(page.url)).path == "/innboks"
        assert "Innlogget som Vera Veileder" in page.text
        # Her inbox comes from the gateway with a token acting for her.
        assert "<h1>Innboks</h1>" in page.text


def test_staff_sign_in_is_refused_for_someone_not_in_the_organisation(
    demo_web: DemoWeb, providers: tuple[Provider, Provider]
) -> None:
    staff_provider, citizen_provider = providers
    tone = next(s for s in _demo(demo_web)["staff"] if s["name"] == "Tone Lærer")
    nav = next(s for s in _demo(demo_web)["staff"] if s["name"] == "Vera Veileder")
    # Tone is the school's: an ID token naming her at NAV gets nowhere.
    staff_provider.person = {"broen_staff_id": tone["id"], "orgnr": nav["orgnr"]}
    with TestClient(create_app(_settings(demo_web, staff_provider, citizen_provider))) as client:
        page = _sign_in(client, "ansatt")
        assert page.status_code == 400
        assert "Du finnes ikke i Broen med den rollen" in page.text
        assert (
            client.get("/innboks", follow_redirects=False)
            .headers["location"]
            .startswith("/logg-inn")
        )


def test_citizen_sign_in_exchanges_the_id_token_for_a_citizen_token(
    demo_web: DemoWeb, providers: tuple[Provider, Provider]
) -> None:
    staff_provider, citizen_provider = providers
    ola = next(p for p in _demo(demo_web)["participants"] if p["key"] == "ola")
    citizen_provider.person = {"pid": ola["national_id"]}
    with TestClient(create_app(_settings(demo_web, staff_provider, citizen_provider))) as client:
        page = _sign_in(client, "innbygger")
        assert page.status_code == 200
        assert urlsplit(str(page.url)).path == "/mine-samtykker"
        # Ola's seeded consents, read with his own citizen token.
        assert "NAV kan dele med skolen" in page.text
        assert ola["national_id"] not in page.text
        assert ola["national_id"] not in client.cookies.get("broen_session", "")


def test_a_forged_state_is_refused(demo_web: DemoWeb, providers: tuple[Provider, Provider]) -> None:
    staff_provider, citizen_provider = providers
    with TestClient(create_app(_settings(demo_web, staff_provider, citizen_provider))) as client:
        started = client.get("/logg-inn/ansatt", follow_redirects=False)
        state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
        page = client.get(f"/logg-inn/ansatt/ferdig?code=stolen&state={state}x")
        assert page.status_code == 400
        assert "Innloggingen ble avvist" in page.text
        assert "Traceback" not in page.text


def test_production_refuses_plain_http_and_has_no_demo_sign_in(tmp_path: Path) -> None:
    init_web_keys(tmp_path)
    with pytest.raises(ConfigurationError, match="https"):
        create_app(
            WebSettings(env="production", keys_dir=tmp_path, public_url="http://web.example")
        )
    people = tmp_path / "web-sign-in.json"
    people.write_text(json.dumps({"staff": [{"id": str(uuid.uuid4())}], "participants": []}))
    settings = WebSettings(
        env="production",
        keys_dir=tmp_path,
        public_url="https://web.example",
        demo_people_file=people,
    )
    with TestClient(create_app(settings), base_url="https://web.example") as client:
        page = client.get("/logg-inn")
        assert page.status_code == 200
        assert "Demo-innlogging" not in page.text
        cookie = page.headers.get("set-cookie", "").lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie, cookie
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        refused = client.post(
            "/logg-inn/demo",
            data={"who": "staff:x", "csrf_token": token.group(1) if token else ""},
            follow_redirects=False,
        )
        assert refused.status_code in (303, 403, 404)
        assert "Innlogget som" not in client.get("/logg-inn").text


def test_a_gateway_that_does_not_answer_is_a_readable_page(tmp_path: Path) -> None:
    """Signing in while the gateway is down: a 503 page in Norwegian, not a 500."""
    init_web_keys(tmp_path)
    staff_id = str(uuid.uuid4())
    people = tmp_path / "web-sign-in.json"
    people.write_text(
        json.dumps(
            {
                "staff": [{"id": staff_id, "name": "A", "orgnr": "1", "roles": [], "unit": "U"}],
                "participants": [],
            }
        )
    )
    settings = WebSettings(
        env="dev",
        keys_dir=tmp_path,
        gateway_url=f"http://127.0.0.1:{_free_port()}",  # nothing listens there
        staff_clients={"1": "broen-web-1"},
        demo_people_file=people,
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/logg-inn")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        answer = client.post(
            "/logg-inn/demo",
            data={"csrf_token": token.group(1), "who": f"staff:{staff_id}", "neste": ""},
        )
        assert answer.status_code == 503
        assert "Tjenesten svarer ikke akkurat nå" in answer.text
        assert "Traceback" not in answer.text and "Innlogget som" not in answer.text
