"""`broen audit verify` over a million entries: the goal in docs/PERFORMANCE.md is 10 s.

Fills a throwaway gateway database with BENCH_AUDIT_ENTRIES (default 1,000,000) chained
entries of a realistic size (a staff caller, two fields released, two withheld), bulk-
inserted from precomputed rows, signs and exports a head, then runs the verification
(`gateway.audit.verify`, BENCH_ROUNDS times (3) for its median and spread, and the
`broen audit verify` command end to end once) and prints entries/s and the seconds
against the goal; the figures also go to BENCH_RESULTS_DIR/audit_verify.json (default
var/bench/). SQLite always; PostgreSQL too when
127.0.0.1:5432 answers (BENCH_AUDIT_POSTGRES_URL overrides the server), in a database of
its own that is dropped afterwards. Figures, not asserts. Everything is removed at the end;
the whole run is cut off after BENCH_AUDIT_TIMEOUT seconds (default 900).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/audit_verify.py` puts bench/ first
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bench.common import Results, rounds_from_env, spread, spread_text  # noqa: E402
from gateway import audit  # noqa: E402
from gateway.audit import (  # noqa: E402
    AuditCaller,
    AuditKeys,
    AuditRecord,
    ReleasedField,
    WithheldField,
)
from shared.db import make_engine, make_sessionmaker  # noqa: E402
from shared.keys import init_keys_dir  # noqa: E402
from shared.migrations import upgrade  # noqa: E402

MIGRATIONS = ROOT / "gateway" / "migrations"
GOAL_SECONDS = 10.0
ENTRIES = int(os.environ.get("BENCH_AUDIT_ENTRIES", "1000000"))
TIMEOUT = int(os.environ.get("BENCH_AUDIT_TIMEOUT", "900"))
CHUNK = 20_000
PARTICIPANTS = 50_000
COLUMNS = ("seq", "participant_id", "caller_orgnr", "content", "prev_hash", "hash")


def _fake_uuid(kind: int, number: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{number:012x}"


def content_template() -> str:
    """One entry's canonical content with markers where entries differ."""
    record = AuditRecord(
        id=uuid.UUID("11111111-1111-4111-8111-111111111111"),
        caller=AuditCaller(
            kind="staff",
            orgnr="974760673",
            agency_type="skole",
            unit_id=str(uuid.uuid4()),
            staff_id=str(uuid.uuid4()),
            client_id="school-sis",
            roles=("kontaktlaerer",),
        ),
        participant_id=uuid.uuid4(),
        purpose="oppfolging",
        released=(
            ReleasedField(field="contact.phone", basis=f"consent:{uuid.uuid4()}", rule="r-7"),
            ReleasedField(field="enrolment.programme", basis="legal:opplaeringslova-15-8"),
        ),
        withheld=(
            WithheldField(field="nav.benefits", reason="never_to_school", rule="r-1"),
            WithheldField(field="address", reason="protected_fortrolig", rule="r-3"),
        ),
        policy_version="2025.1",
        request_id="22222222-2222-4222-8222-222222222222",
    )
    return (
        audit.canonical_json(record.content())
        .replace("11111111-1111-4111-8111-111111111111", "@ID@")
        .replace("22222222-2222-4222-8222-222222222222", "@REQ@")
    )


def chained_rows(count: int) -> Iterator[list[tuple[Any, ...]]]:
    """The chain in chunks of rows (as COLUMNS), hashed exactly as `append` hashes."""
    template = content_template()
    prev = audit.GENESIS_HASH
    chunk: list[tuple[Any, ...]] = []
    for seq in range(1, count + 1):
        content = template.replace("@ID@", _fake_uuid(1, seq)).replace("@REQ@", _fake_uuid(2, seq))
        participant = _fake_uuid(3, seq % PARTICIPANTS)
        digest = audit.entry_hash(
            seq=seq,
            prev_hash=prev,
            participant_id=participant,
            caller_orgnr="974760673",
            content=content,
        )
        chunk.append((seq, participant, "974760673", content, prev, digest))
        prev = digest
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fill_sqlite(path: Path, count: int) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        insert = (
            "INSERT INTO audit_entry (seq, participant_id, caller_orgnr, content, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        for chunk in chained_rows(count):
            connection.executemany(insert, chunk)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


async def fill_postgres(url: str, count: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for chunk in chained_rows(count):
            await connection.copy_records_to_table("audit_entry", records=chunk, columns=COLUMNS)
        await connection.execute("ANALYZE audit_entry")
    finally:
        await connection.close()


async def sign_and_export(url: str, keys: AuditKeys, head_file: Path) -> None:
    engine = make_engine(url)
    try:
        await audit.HeadSigner(make_sessionmaker(engine), keys, head_file).sign_now()
    finally:
        await engine.dispose()


async def timed_verify(url: str, keys: AuditKeys, head_file: Path) -> audit.VerifyReport:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await audit.verify(
                connection, keys, exported_head=audit.read_exported_head(head_file)
            )
    finally:
        await engine.dispose()


def run_backend(
    name: str, url: str, keys_dir: Path, head_file: Path, fill: Any, rounds: int
) -> dict[str, Any]:
    print(f"\n== {name}: {ENTRIES:,} entries")
    upgrade(MIGRATIONS, url)
    started = time.perf_counter()
    fill()
    filled = time.perf_counter() - started
    print(f"filled in {filled:.1f} s (bulk insert of precomputed rows)")
    keys = AuditKeys.load(keys_dir)
    asyncio.run(sign_and_export(url, keys, head_file))

    seconds = []
    ok = True
    for round_no in range(1, rounds + 1):
        report = asyncio.run(timed_verify(url, keys, head_file))
        seconds.append(report.seconds)
        ok = ok and report.ok and report.entries == ENTRIES
        verdict = "within" if report.seconds <= GOAL_SECONDS else "OVER"
        print(
            f"verify (gateway.audit.verify) round {round_no}: ok={report.ok} "
            f"entries={report.entries:,} {report.seconds:.2f} s, "
            f"{report.entries / report.seconds:,.0f} entries/s -> {verdict} the "
            f"{GOAL_SECONDS:.0f} s goal"
        )
    if rounds > 1:
        print(f"verify, median (min–max) of {rounds} rounds: {spread_text(seconds)} s")

    env = {
        **os.environ,
        "BROEN_GATEWAY_DATABASE_URL": url,
        "BROEN_KEYS_DIR": str(keys_dir),
    }
    env.pop("BROEN_ENV", None)
    started = time.perf_counter()
    command = subprocess.run(  # noqa: S603  (our own CLI, fixed arguments)
        [sys.executable, "-m", "broen_cli.main", "audit", "verify", "--head-file", str(head_file)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    wall = time.perf_counter() - started
    first = command.stdout.strip().splitlines()[0] if command.stdout.strip() else ""
    print(
        f"broen audit verify (process, start-up included): exit {command.returncode}, "
        f"{wall:.2f} s wall; {first}"
    )
    if command.returncode != 0:
        print(command.stderr.strip()[-2000:])
    return {
        "backend": name,
        "entries": ENTRIES,
        "fill_s": filled,
        "ok": ok,
        "verify_s": spread(seconds),
        "verify_rounds_s": seconds,
        "entries_per_s": ENTRIES / statistics.median(seconds),
        "cli_exit": command.returncode,
        "cli_wall_s": wall,
    }


def postgres_base_url() -> str | None:
    explicit = os.environ.get("BENCH_AUDIT_POSTGRES_URL")
    if explicit:
        return explicit
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    except OSError:
        return None


async def _admin(base_url: str, statement: str) -> None:
    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _timed_out(*_: object) -> None:
    raise TimeoutError(f"benchmark cut off after {TIMEOUT} s")


def main() -> int:
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(TIMEOUT)
    rounds = rounds_from_env(3)
    results = Results("audit_verify", {"entries": ENTRIES, "rounds": rounds, "timeout_s": TIMEOUT})
    results.data["goal_s"] = GOAL_SECONDS
    backends: list[dict[str, Any]] = []
    results.data["backends"] = backends
    try:
        with tempfile.TemporaryDirectory(prefix="broen-audit-bench-") as workdir:
            work = Path(workdir)
            keys_dir = work / "keys"
            init_keys_dir(keys_dir)
            database = work / "gateway.db"
            backends.append(
                run_backend(
                    "sqlite",
                    f"sqlite+aiosqlite:///{database}",
                    keys_dir,
                    work / "head-sqlite.json",
                    lambda: fill_sqlite(database, ENTRIES),
                    rounds,
                )
            )
            database.unlink()
            base = postgres_base_url()
            if base is None:
                print("\n== PostgreSQL: nothing answers on 127.0.0.1:5432, skipped")
                results.data["notes"].append("PostgreSQL: skipped, nothing answers on 5432.")
                return 0
            name = f"broen_bench_audit_{uuid.uuid4().hex[:8]}"
            url = base.rsplit("/", 1)[0] + "/" + name
            asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
            try:
                backends.append(
                    run_backend(
                        "postgresql",
                        url,
                        keys_dir,
                        work / "head-postgresql.json",
                        lambda: asyncio.run(fill_postgres(url, ENTRIES)),
                        rounds,
                    )
                )
            finally:
                signal.alarm(0)
                asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except BaseException as exc:
        results.data["failed"] = True
        results.data["notes"].append(f"FAILED: {type(exc).__name__}: {exc}")
        raise
    finally:
        results.data["failed"] = results.data["failed"] or any(
            not b["ok"] or b["cli_exit"] != 0 for b in backends
        )
        results.write()
    return 1 if results.data["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
