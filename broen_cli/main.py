"""The `broen` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from broen_cli.audit import audit_app
from broen_cli.common import (
    MIGRATIONS,
    ROOT,
    SETTINGS,
    JsonOption,
    emit,
    fail,
    require_dev_mode,
    settings_for,
)
from broen_cli.dev import (
    database_is_empty,
    demo_staff_table,
    dev_app,
    prepare_web,
    seed_demo_world,
)
from broen_cli.directory import org_app, staff_app, unit_app
from broen_cli.keys import keys_app
from broen_cli.legal import legal_app
from broen_cli.retention import retention_app
from shared.keys import init_keys_dir
from shared.migrations import upgrade
from shared.settings import (
    ComponentSettings,
    ConfigurationError,
    DevModeRefused,
    ensure_dev_mode_is_safe,
)
from web.settings import WebSettings

app = typer.Typer(
    help="Broen: consent-gated information sharing between agencies.",
    no_args_is_help=True,
    # A traceback must never print local variables: they can hold personal data.
    pretty_exceptions_show_locals=False,
)
admin_app = typer.Typer(help="Operator commands.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(dev_app, name="dev")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
admin_app.add_typer(org_app, name="org")
admin_app.add_typer(unit_app, name="unit")
admin_app.add_typer(staff_app, name="staff")
admin_app.add_typer(keys_app, name="keys")
admin_app.add_typer(legal_app, name="legal-basis")


def _client_app() -> typer.Typer:
    from broen_cli.client import client_app

    return client_app


admin_app.add_typer(_client_app(), name="client", help="API clients (systems) and their keys.")

ComponentArgument = typer.Argument(..., help="gateway, participant, consent, messaging or web")


def _migrate_all() -> list[str]:
    migrated = []
    for component, location in MIGRATIONS.items():
        settings = settings_for(component)
        if settings.database_url.startswith("sqlite"):
            Path(settings.database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        upgrade(location, settings.database_url)
        migrated.append(component)
    return migrated


@app.command()
def migrate(as_json: bool = JsonOption) -> None:
    """Run every component's database migrations."""
    migrated = _migrate_all()
    emit(as_json, {"migrated": migrated}, "migrated: " + ", ".join(migrated))


@app.command()
def serve(component: str = ComponentArgument) -> None:
    """Run one component (used by the Procfile and by container images)."""
    import uvicorn

    from shared.logs import configure_logging

    if component not in (*SETTINGS, "web"):
        fail(f"unknown component {component!r}; choose one of {', '.join(SETTINGS)}, web")
    settings = _settings(component)
    configure_logging(component, settings.log_level)
    factory = _factory(component)
    try:
        application = factory(settings)
    except ConfigurationError as refusal:
        fail(str(refusal))
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def _settings(component: str) -> ComponentSettings | WebSettings:
    # The web app has no database: its settings are not a component's.
    return WebSettings() if component == "web" else settings_for(component)


def _factory(component: str):  # type: ignore[no-untyped-def]
    if component == "gateway":
        from gateway.app import create_app
    elif component == "web":
        from web.app import create_app  # type: ignore[assignment]
    elif component == "participant":
        from services.participant.app import create_app  # type: ignore[assignment]
    elif component == "consent":
        from services.consent.app import create_app  # type: ignore[assignment]
    else:
        from services.messaging.app import create_app  # type: ignore[assignment]
    return create_app


WALKTHROUGH = """
Broen is starting (dev mode, embedded SQLite under var/):

  gateway      http://127.0.0.1:8000   (API docs: http://127.0.0.1:8000/docs)
  participant  http://127.0.0.1:8001   consent http://127.0.0.1:8002
  messaging    http://127.0.0.1:8003   (services answer only the gateway's internal tokens)
  web          http://127.0.0.1:8080   (sign in as a demo teacher, veileder or participant)

Try it in another terminal (the demo school is the API client demo-skole):

  TOKEN=$(.venv/bin/broen dev token --client-id demo-skole)
  curl -s http://127.0.0.1:8000/api/v1/participants -H "Authorization: Bearer $TOKEN" \\
       -H 'Broen-Purpose: inntak' -H 'Content-Type: application/json' \\
       -d '{"national_id": "01010750160", "name": "Demo Elev", "source_system": "curl"}'
  curl -s http://127.0.0.1:8000/api/v1/participants/ID/assignments \\
       -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{"role": "kontaktlaerer", "staff_id": "STAFF_ID"}'
  curl -s http://127.0.0.1:8000/api/v1/participants/ID -H "Authorization: Bearer $TOKEN" \\
       -H 'Broen-Purpose: oppfolging'

Reading needs a relationship (an assignment or programme place) and a declared purpose.
Acting as a person instead of a system: TOKEN=$(.venv/bin/broen dev token --staff STAFF_ID)
What was read about a participant: TOKEN=$(.venv/bin/broen dev token --citizen ID), then
  curl -s http://127.0.0.1:8000/api/v1/me/access-log -H "Authorization: Bearer $TOKEN"
{staff}
Ctrl-C stops everything.
"""


@dev_app.command("up")
def up() -> None:
    """Keys, migrations, demo seed, then every component under one supervisor (`make run`)."""
    require_dev_mode()
    for component in SETTINGS:
        try:
            ensure_dev_mode_is_safe(settings_for(component))
        except DevModeRefused as refusal:
            fail(f"{component}: {refusal}")
    keys_dir = Path(os.environ.get("BROEN_KEYS_DIR", "var/keys"))
    init_keys_dir(keys_dir)
    _migrate_all()
    if database_is_empty():
        seed_demo_world()
    for name, value in prepare_web(keys_dir).items():
        os.environ.setdefault(name, value)  # the operator's own settings win
    typer.echo(WALKTHROUGH.replace("{staff}", demo_staff_table()))
    honcho = Path(sys.executable).parent / "honcho"
    # Replace this process with the supervisor, so Ctrl-C reaches it and its children directly.
    os.execv(str(honcho), [str(honcho), "start", "-f", str(ROOT / "Procfile"), "-d", os.getcwd()])  # noqa: S606


if __name__ == "__main__":
    app()
