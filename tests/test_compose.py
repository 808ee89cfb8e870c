"""docker-compose.yml: the production shape, checked without a Docker engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("gateway", "participant", "consent", "messaging")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def test_names_the_four_services_postgres_and_nats(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert name in services, f"no service {name}"
    postgres = [s for s in services.values() if str(s.get("image", "")).startswith("postgres")]
    assert len(postgres) == 1
    nats = [s for s in services.values() if str(s.get("image", "")).startswith("nats")]
    assert len(nats) == 1
    assert "-js" in _command(nats[0]), "NATS must run with JetStream (-js)"


def test_one_database_per_service_created_by_the_init_script(services: dict[str, Any]) -> None:
    postgres = next(s for s in services.values() if str(s.get("image", "")).startswith("postgres"))
    mounts = [str(v) for v in postgres.get("volumes", [])]
    assert any(m.startswith("./deploy/postgres-init:/docker-entrypoint-initdb.d") for m in mounts)
    scripts = sorted((ROOT / "deploy" / "postgres-init").glob("*.sql"))
    init_sql = "\n".join(script.read_text() for script in scripts)
    for name in APP_SERVICES:
        assert f"CREATE DATABASE {name};" in init_sql


def test_only_the_gateway_publishes_a_port(services: dict[str, Any]) -> None:
    publishing = sorted(name for name, service in services.items() if service.get("ports"))
    assert publishing == ["gateway"]


def test_every_app_service_is_configured_for_production(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert _command(service) == ["serve", name]
        assert "build" in service
        env = service["environment"]
        prefix = f"BROEN_{name.upper()}_"
        assert env[prefix + "DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env[prefix + "DATABASE_URL"].endswith(f"/{name}")
        assert env[prefix + "HOST"] == "0.0.0.0"  # noqa: S104 - inside its container
        assert "BROEN_ENV" not in env, "containers run in production mode"
        assert env["BROEN_KEYS_DIR"]
        assert env["BROEN_NATS_URL"].startswith("nats://")
        assert any(str(v).split(":")[1] == env["BROEN_KEYS_DIR"] for v in service["volumes"])
        # A service sees its own database only.
        others = [k for k in env if k.endswith("_DATABASE_URL") and not k.startswith(prefix)]
        assert others == []


def test_every_app_service_is_healthy_only_when_ready(services: dict[str, Any]) -> None:
    """/readyz (the database answers), asked with the image's own Python: the slim image
    has no curl or wget."""
    for name in APP_SERVICES:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = [str(part) for part in check["test"]]
        assert test[:3] == ["CMD", "python", "-c"], name
        port = services[name]["environment"][f"BROEN_{name.upper()}_PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in test[3], name
        assert "urllib.request" in test[3], name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:" in dockerfile
    assert "curl" not in dockerfile and "wget" not in dockerfile


def test_the_gateway_starts_after_the_services_are_ready(services: dict[str, Any]) -> None:
    depends = services["gateway"]["depends_on"]
    for name in APP_SERVICES[1:]:
        assert depends[name]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name]


def test_redis_counts_the_gateways_rate_limits(services: dict[str, Any]) -> None:
    redis_name = next(n for n, s in services.items() if str(s.get("image", "")) == "redis:7-alpine")
    redis = services[redis_name]
    assert [str(part) for part in redis["healthcheck"]["test"]] == ["CMD", "redis-cli", "ping"]
    assert not redis.get("ports"), "Redis stays inside the compose network"
    gateway = services["gateway"]
    url = gateway["environment"]["BROEN_REDIS_URL"]
    assert url == f"redis://{redis_name}:6379"
    assert gateway["depends_on"][redis_name]["condition"] == "service_healthy"
    # Only the gateway counts rate limits.
    for name in APP_SERVICES[1:]:
        assert "BROEN_REDIS_URL" not in services[name]["environment"], name


def test_receipts_name_the_gateway_as_their_issuer(services: dict[str, Any]) -> None:
    gateway_issuer = services["gateway"]["environment"]["BROEN_GATEWAY_ISSUER"]
    assert services["consent"]["environment"]["BROEN_CONSENT_RECEIPT_ISSUER"] == gateway_issuer
    published = services["gateway"]["ports"][0].split(":")[0]
    assert gateway_issuer == f"http://localhost:{published}"


def test_services_wait_for_the_one_shot_migration(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert _command(migrate) == ["migrate"]
    for name in APP_SERVICES:
        env_key = f"BROEN_{name.upper()}_DATABASE_URL"
        assert migrate["environment"][env_key].endswith(f"/{name}")
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["keys"]["condition"] == "service_completed_successfully"
    assert _command(services["keys"])[:3] == ["admin", "keys", "init"]


def test_the_dockerfile_builds_one_image_for_every_component() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert 'ENTRYPOINT ["broen"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", "var", ".git"):
        assert entry in ignored
