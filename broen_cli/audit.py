"""`broen audit verify`: check the gateway's audit chain, its signed heads and the exported head."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from sqlalchemy.exc import SQLAlchemyError

from broen_cli.common import JsonOption, emit, fail, settings_for
from gateway.audit import AuditKeys, VerifyReport, read_exported_head, verify
from gateway.settings import GatewaySettings
from shared.db import make_engine
from shared.settings import ConfigurationError

audit_app = typer.Typer(help="The gateway's tamper-evident audit log.", no_args_is_help=True)


async def _verify(database_url: str, keys: AuditKeys, exported_head: str | None) -> VerifyReport:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await verify(connection, keys, exported_head=exported_head)
    finally:
        await engine.dispose()


def _describe(report: VerifyReport, head_file: Path | None) -> str:
    if report.ok:
        lines = [
            f"audit log intact: {report.entries} entries, last {report.last_seq} "
            f"(hash {report.last_hash[:16]}...), {report.heads_checked} signed head(s) verified"
        ]
    else:
        lines = [f"audit log NOT intact: first bad entry {report.first_bad_seq}"]
        lines += [f"  {finding.what}" for finding in report.findings]
    if report.exported_head_seq is not None:
        lines.append(f"checked against the exported head (seq {report.exported_head_seq})")
    elif head_file is None:
        lines.append("no exported head found: a cut-off tail cannot be detected")
    lines.append(f"{report.seconds:.2f} s")
    return "\n".join(lines)


@audit_app.command("verify")
def verify_command(
    head_file: Path = typer.Option(
        None,
        "--head-file",
        help="The exported head to check against (default: the gateway's audit_head_file).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Check every entry, the chain links, the signed heads and the last exported head."""
    settings = settings_for("gateway")
    assert isinstance(settings, GatewaySettings)
    path = head_file or settings.audit_head_file
    try:
        keys = AuditKeys.load(settings.keys_dir)
    except ConfigurationError as problem:
        fail(str(problem))
    exported: str | None = None
    try:
        exported = read_exported_head(path)
    except FileNotFoundError:
        if head_file is not None:
            fail(f"{head_file} does not exist")
    except (OSError, ValueError) as problem:
        fail(str(problem))
    try:
        report = asyncio.run(_verify(settings.database_url, keys, exported))
    except SQLAlchemyError as error:
        fail(f"cannot read the audit log from the gateway database ({type(error).__name__})")
    emit(
        as_json,
        {**report.as_json(), "head_file": str(path) if exported is not None else None},
        _describe(report, path if exported is not None else None),
    )
    if not report.ok:
        raise typer.Exit(1)
