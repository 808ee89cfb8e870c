"""The audit log: appending, group commit, signed heads, and tampering caught by verify."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI
from joserfc.jwk import OKPKey
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from gateway import audit
from gateway.audit import (
    AuditCaller,
    AuditKeys,
    AuditRecord,
    AuditUnavailable,
    AuditWriter,
    HeadSigner,
    ReleasedField,
    WithheldField,
)
from gateway.audit_routes import router as audit_router
from gateway.models import AuditEntry
from gateway.settings import GatewaySettings
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import CallerContext
from shared.keys import AUDIT_SIGNING_JWKS, new_audit_signing_key
from tests.gateway.conftest import ISSUER

pytestmark = pytest.mark.anyio


def make_record(**overrides: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "caller": AuditCaller(
            kind="staff",
            orgnr="974760673",
            agency_type="skole",
            unit_id=str(uuid.uuid4()),
            staff_id=str(uuid.uuid4()),
            client_id="school-sis",
            roles=("kontaktlaerer",),
        ),
        "participant_id": uuid.uuid4(),
        "purpose": "oppfolging",
        "released": (
            ReleasedField(field="contact.phone", basis=f"consent:{uuid.uuid4()}", rule="r-7"),
            ReleasedField(field="enrolment.programme", basis="legal:opplaeringslova-15-8"),
        ),
        "withheld": (
            WithheldField(field="nav.benefits", reason="never_to_school", rule="r-1"),
            WithheldField(field="address", reason="protected_fortrolig", rule="r-3"),
        ),
        "policy_version": "2025.1",
        "request_id": str(uuid.uuid4()),
    }
    values.update(overrides)
    return AuditRecord(**values)


@pytest.fixture
async def engine(database_url: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url("gateway"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def keys(keys_dir: Path) -> AuditKeys:
    return AuditKeys.load(keys_dir)


async def append_records(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async with sessions() as session, session.begin():
        await audit.append(session, [make_record() for _ in range(count)])


async def sign(sessions: async_sessionmaker[AsyncSession], keys: AuditKeys) -> audit.SignedHead:
    async with sessions() as session, session.begin():
        return await audit.sign_head(session, keys)


async def run_verify(
    engine: AsyncEngine, keys: AuditKeys, exported: str | None = None, batch_size: int = 3
) -> audit.VerifyReport:
    # A small batch size, so the keyset paging is exercised too.
    async with engine.connect() as connection:
        return await audit.verify(connection, keys, exported_head=exported, batch_size=batch_size)


async def tamper(engine: AsyncEngine, *statements: str, **params: Any) -> None:
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement), params)


async def entry(engine: AsyncEngine, seq: int) -> dict[str, Any]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(text("SELECT * FROM audit_entry WHERE seq = :s"), {"s": seq})
        ).one()
    return dict(row._mapping)


# --- appending and verifying -----------------------------------------------------------------


async def test_appended_entries_form_an_intact_chain(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    async with sessions() as session, session.begin():
        first = await audit.append(session, [make_record(), make_record()])
    async with sessions() as session, session.begin():
        second = await audit.append(session, [make_record() for _ in range(5)])
    assert [e.seq for e in first + second] == list(range(1, 8))
    head = await sign(sessions, keys)
    assert (head.seq, head.hash) == (7, second[-1].hash)

    report = await run_verify(engine, keys, head.jws)

    assert report.ok, report.findings
    assert (report.entries, report.last_seq, report.last_hash) == (7, 7, second[-1].hash)
    assert report.heads_checked == 1
    assert report.exported_head_seq == 7


async def test_an_entry_hashes_to_the_documented_canonical_form(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    record = make_record()
    await append_records(sessions, 1)
    async with sessions() as session, session.begin():
        [appended] = await audit.append(session, [record])
    row = await entry(engine, appended.seq)
    # Re-implemented from the module docstring: parse, re-serialise canonically, hash.
    document = {
        "seq": row["seq"],
        "prev_hash": row["prev_hash"],
        "participant_id": row["participant_id"],
        "caller_orgnr": row["caller_orgnr"],
        "content": json.loads(row["content"]),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    import hashlib

    assert hashlib.sha256(canonical.encode()).hexdigest() == row["hash"] == appended.hash
    assert row["prev_hash"] == (await entry(engine, 1))["hash"]
    assert document["content"]["released"][0]["basis"].startswith("consent:")
    assert document["content"]["caller"]["roles"] == ["kontaktlaerer"]
    assert document["participant_id"] == str(record.participant_id)


# --- tampering ------------------------------------------------------------------------------


async def test_an_edited_field_is_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 6)
    content = (await entry(engine, 3))["content"].replace("oppfolging", "statistikk")
    await tamper(engine, "UPDATE audit_entry SET content = :c WHERE seq = 3", c=content)

    report = await run_verify(engine, keys)

    assert not report.ok
    assert report.first_bad_seq == 3
    assert "entry 3: its hash does not match" in report.findings[0].what


async def test_moving_an_entry_to_another_participant_is_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 4)
    await tamper(
        engine, "UPDATE audit_entry SET participant_id = :p WHERE seq = 2", p=str(uuid.uuid4())
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 2


async def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    row = await entry(engine, 3)
    content = row["content"].replace("oppfolging", "statistikk")
    forged_hash = audit.entry_hash(
        seq=3,
        prev_hash=row["prev_hash"],
        participant_id=row["participant_id"],
        caller_orgnr=row["caller_orgnr"],
        content=content,
    )
    await tamper(
        engine,
        "UPDATE audit_entry SET content = :c, hash = :h WHERE seq = 3",
        c=content,
        h=forged_hash,
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 4
    assert "prev_hash is not the hash of entry 3" in report.findings[0].what


async def test_a_deleted_entry_is_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    await tamper(engine, "DELETE FROM audit_entry WHERE seq = 3")

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 3
    assert report.findings[0].what == "entry 3 is missing (the next entry is 4)"


async def test_a_deleted_entry_with_the_rest_renumbered_is_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    await tamper(
        engine,
        "DELETE FROM audit_entry WHERE seq = 3",
        "UPDATE audit_entry SET seq = seq + 1000 WHERE seq > 3",
        "UPDATE audit_entry SET seq = seq - 1001 WHERE seq > 1000",
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 3


async def test_two_swapped_entries_are_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    second, fourth = await entry(engine, 2), await entry(engine, 4)
    swap = (
        "UPDATE audit_entry SET content = :c, participant_id = :p, prev_hash = :ph, hash = :h "
        "WHERE seq = :s"
    )
    async with engine.begin() as connection:
        for seq, row in ((2, fourth), (4, second)):
            await connection.execute(
                text(swap),
                {
                    "c": row["content"],
                    "p": row["participant_id"],
                    "ph": row["prev_hash"],
                    "h": row["hash"],
                    "s": seq,
                },
            )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 2
    assert "entry 2: prev_hash" in report.findings[0].what


async def test_swapped_contents_alone_are_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    second, fourth = await entry(engine, 2), await entry(engine, 4)
    await tamper(
        engine,
        "UPDATE audit_entry SET content = :c4 WHERE seq = 2",
        "UPDATE audit_entry SET content = :c2 WHERE seq = 4",
        c2=second["content"],
        c4=fourth["content"],
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 2


async def test_a_forged_entry_inserted_with_a_valid_hash_is_caught_at_the_next_link(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 5)
    before = await entry(engine, 2)
    forged = audit.PreparedEntry.of(make_record())
    forged_hash = audit.entry_hash(
        seq=3,
        prev_hash=before["hash"],
        participant_id=forged.participant_id,
        caller_orgnr=forged.caller_orgnr,
        content=forged.content,
    )
    await tamper(
        engine,
        "UPDATE audit_entry SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_entry SET seq = seq - 999 WHERE seq > 1000",
        "INSERT INTO audit_entry (seq, participant_id, caller_orgnr, content, prev_hash, hash) "
        "VALUES (3, :p, :o, :c, :ph, :h)",
        p=forged.participant_id,
        o=forged.caller_orgnr,
        c=forged.content,
        ph=before["hash"],
        h=forged_hash,
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 4
    assert "prev_hash is not the hash of entry 3" in report.findings[0].what


async def test_a_forged_entry_with_a_made_up_hash_is_named(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 3)
    forged = audit.PreparedEntry.of(make_record())
    await tamper(
        engine,
        "INSERT INTO audit_entry (seq, participant_id, caller_orgnr, content, prev_hash, hash) "
        "VALUES (4, :p, :o, :c, :ph, :h)",
        p=forged.participant_id,
        o=forged.caller_orgnr,
        c=forged.content,
        ph=(await entry(engine, 3))["hash"],
        h="ab" * 32,
    )

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 4


async def test_a_cut_off_tail_is_caught_only_against_the_exported_head(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    keys: AuditKeys,
    tmp_path: Path,
) -> None:
    await append_records(sessions, 5)
    head_file = tmp_path / "audit-head.json"
    signer = HeadSigner(sessions, keys, head_file)
    head = await signer.sign_now()
    assert head.seq == 5
    exported = audit.read_exported_head(head_file)
    # The attacker removes the last two entries and every stored head that covers them.
    await tamper(engine, "DELETE FROM audit_entry WHERE seq > 3", "DELETE FROM audit_signed_head")

    alone = await run_verify(engine, keys)
    against_head = await run_verify(engine, keys, exported)

    assert alone.ok and alone.last_seq == 3
    assert not against_head.ok
    assert against_head.first_bad_seq == 4
    assert "entries 4..5 are missing" in against_head.findings[0].what


async def test_a_cut_off_tail_is_caught_by_a_stored_head_left_behind(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 4)
    await sign(sessions, keys)
    await tamper(engine, "DELETE FROM audit_entry WHERE seq = 4")

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 4


async def test_a_rewritten_chain_is_placed_between_the_signed_heads(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 3)
    await sign(sessions, keys)
    await append_records(sessions, 3)
    await sign(sessions, keys)
    # Entry 5 edited and every hash from there on recomputed: the chain itself is consistent.
    prev = (await entry(engine, 4))["hash"]
    async with engine.begin() as connection:
        rows = (
            await connection.execute(text("SELECT * FROM audit_entry WHERE seq >= 5 ORDER BY seq"))
        ).all()
        for row in rows:
            content = row.content.replace("oppfolging", "statistikk")
            digest = audit.entry_hash(
                seq=row.seq,
                prev_hash=prev,
                participant_id=row.participant_id,
                caller_orgnr=row.caller_orgnr,
                content=content,
            )
            await connection.execute(
                text(
                    "UPDATE audit_entry SET content = :c, prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {"c": content, "p": prev, "h": digest, "s": row.seq},
            )
            prev = digest

    report = await run_verify(engine, keys)

    assert report.first_bad_seq == 4
    assert "rewritten somewhere in entries 4..6" in report.findings[0].what


async def test_a_forged_head_signature_is_caught(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 2)
    head = await sign(sessions, keys)
    # Same kid and payload, signed by a key that is not the gateway's.
    impostor = OKPKey.generate_key("Ed25519", parameters={"kid": head.kid})
    impostor_jwks = {
        "keys": [{**impostor.as_dict(private=True), "not_before": "2000-01-01T00:00:00Z"}]
    }
    forged = AuditKeys.from_jwks(impostor_jwks).sign_head(seq=2, hash=head.hash, time=head.time)
    await tamper(engine, "UPDATE audit_signed_head SET jws = :j", j=forged)

    report = await run_verify(engine, keys)

    assert not report.ok
    assert report.findings[0].seq is None
    assert "the signature does not verify" in report.findings[0].what
    # A forged exported head fails the same way.
    exported = await run_verify(engine, keys, forged)
    assert any(f.what.startswith("exported head: the signature") for f in exported.findings)


async def test_a_head_whose_columns_were_edited_is_caught(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    await append_records(sessions, 2)
    await sign(sessions, keys)
    await tamper(engine, "UPDATE audit_signed_head SET seq = 1")

    report = await run_verify(engine, keys)

    assert "its columns differ from what it signs" in report.findings[0].what


async def test_heads_signed_before_a_key_rotation_still_verify(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys_dir: Path
) -> None:
    data = json.loads((keys_dir / AUDIT_SIGNING_JWKS).read_text())
    old = {**data["keys"][-1], "not_before": "2020-01-01T00:00:00Z"}
    old_keys = AuditKeys.from_jwks({"keys": [old]})
    await append_records(sessions, 2)
    old_head = await sign(sessions, old_keys)
    # Rotation: the old key is retired now, a new key is appended and signs from now on.
    now = datetime.now(UTC)
    retired = {**old, "not_after": audit.format_time(now)}
    rotated = AuditKeys.from_jwks({"keys": [retired, new_audit_signing_key(now)]})
    await append_records(sessions, 1)
    new_head = await sign(sessions, rotated)
    assert new_head.kid != old_head.kid

    published = AuditKeys.from_jwks(rotated.public_jwks())
    report = await run_verify(engine, published)

    assert report.ok, report.findings
    assert report.heads_checked == 2
    assert all("d" not in key for key in rotated.public_jwks()["keys"])
    assert rotated.public_jwks()["keys"][0]["not_after"] == audit.format_time(now)
    # The retired key cannot vouch for a head signed after its validity ended.
    late = old_keys.sign_head(seq=3, hash=new_head.hash, time=now + timedelta(hours=1))
    with pytest.raises(audit.InvalidHead, match="outside the validity"):
        published.verify_head(late)


# --- the batching writer ----------------------------------------------------------------------


async def test_concurrent_writes_land_contiguously_and_each_returns_after_its_commit(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], keys: AuditKeys
) -> None:
    async def committed(seq: int) -> bool:
        # Another connection sees only what was committed.
        async with engine.connect() as connection:
            found = await connection.execute(
                text("SELECT count(*) FROM audit_entry WHERE seq = :s"), {"s": seq}
            )
            return found.scalar_one() == 1

    async def request(writer: AuditWriter) -> tuple[int, bool]:
        appended = await writer.write(make_record())
        return appended.seq, await committed(appended.seq)

    async with AuditWriter(sessions, max_batch=16, max_wait_seconds=0.002) as writer:
        results = await asyncio.gather(*(request(writer) for _ in range(60)))

    seqs = sorted(seq for seq, _ in results)
    assert seqs == list(range(1, 61))
    assert all(visible for _, visible in results)
    assert writer.entries == 60
    assert writer.batches < 60  # grouped
    assert (await run_verify(engine, keys, batch_size=10_000)).ok


async def test_two_replicas_appending_at_once_share_one_chain(
    database_url: Callable[[str], str], keys: AuditKeys
) -> None:
    url = database_url("gateway")
    replicas = [make_engine(url), make_engine(url)]
    try:
        async with (
            AuditWriter(make_sessionmaker(replicas[0])) as first,
            AuditWriter(make_sessionmaker(replicas[1])) as second,
        ):
            appended = await asyncio.gather(
                *(writer.write(make_record()) for _ in range(20) for writer in (first, second))
            )
        assert sorted(entry.seq for entry in appended) == list(range(1, 41))
        assert (await run_verify(replicas[0], keys, batch_size=7)).ok
    finally:
        for replica in replicas:
            await replica.dispose()


async def test_writes_queued_before_close_are_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    writer = AuditWriter(sessions)
    await writer.start()
    pending = [asyncio.create_task(writer.write(make_record())) for _ in range(5)]
    await asyncio.sleep(0)
    await writer.aclose()
    assert sorted(appended.seq for appended in await asyncio.gather(*pending)) == [1, 2, 3, 4, 5]
    with pytest.raises(AuditUnavailable):
        await writer.write(make_record())


async def test_a_failed_commit_fails_every_waiter_of_the_batch(tmp_path: Path) -> None:
    # No such table: every append fails, and every waiter is told.
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        async with AuditWriter(make_sessionmaker(broken)) as writer:
            results = await asyncio.gather(
                *(writer.write(make_record()) for _ in range(4)), return_exceptions=True
            )
    finally:
        await broken.dispose()
    assert all(isinstance(result, AuditUnavailable) for result in results)
    assert results[0].status == 503  # type: ignore[union-attr]


# --- heads: signer, file, endpoint -----------------------------------------------------------


async def test_the_head_signer_exports_the_head_and_never_moves_the_file_back(
    sessions: async_sessionmaker[AsyncSession], keys: AuditKeys, tmp_path: Path
) -> None:
    head_file = tmp_path / "var" / "audit-head.json"
    signer = HeadSigner(sessions, keys, head_file, interval_seconds=3600)
    await signer.start()
    for _ in range(500):  # the first head is signed at start (give a loaded machine 5 s)
        if head_file.exists():
            break
        await asyncio.sleep(0.01)
    assert json.loads(head_file.read_text())["seq"] == 0
    await append_records(sessions, 3)
    await signer.aclose()  # signs the grown chain once more on the way out
    on_file = json.loads(head_file.read_text())
    assert on_file["seq"] == 3
    assert keys.verify_head(on_file["jws"]).seq == 3
    older = audit.SignedHead(seq=1, hash="0" * 64, time=datetime.now(UTC), kid="k", jws="x")
    assert audit.export_head(head_file, older) is False
    assert json.loads(head_file.read_text())["seq"] == 3


@pytest.fixture
async def audit_http(
    gateway_app: FastAPI, gateway_settings: GatewaySettings
) -> AsyncIterator[httpx.AsyncClient]:
    gateway_app.include_router(audit_router)
    gateway_app.state.audit_keys = AuditKeys.load(gateway_settings.keys_dir)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway_app), base_url=ISSUER
    ) as client:
        yield client


def bearer(app: FastAPI, scopes: list[str]) -> dict[str, str]:
    issued = app.state.auth.tokens.issue_system_token(
        client_id="tilsyn", orgnr="974760673", agency_type="skole", scopes=scopes
    )
    return {"Authorization": f"Bearer {issued['access_token']}"}


async def test_the_head_endpoint_needs_audit_read_and_serves_a_verifiable_head(
    audit_http: httpx.AsyncClient, gateway_app: FastAPI
) -> None:
    sessions = gateway_app.state.sessionmaker
    keys = AuditKeys.load(gateway_app.state.settings.keys_dir)
    none_yet = await audit_http.get(
        "/api/v1/audit/head", headers=bearer(gateway_app, ["audit:read"])
    )
    assert none_yet.status_code == 404
    await append_records(sessions, 2)
    signed = await sign(sessions, keys)

    anonymous = await audit_http.get("/api/v1/audit/head")
    wrong_scope = await audit_http.get(
        "/api/v1/audit/head", headers=bearer(gateway_app, ["participants:read"])
    )
    response = await audit_http.get(
        "/api/v1/audit/head", headers=bearer(gateway_app, ["audit:read"])
    )
    published = await audit_http.get(
        "/api/v1/audit/keys", headers=bearer(gateway_app, ["audit:read"])
    )
    assert (await audit_http.get("/api/v1/audit/keys")).status_code == 401

    assert anonymous.status_code == 401
    assert wrong_scope.status_code == 403
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["seq"], body["hash"], body["kid"]) == (2, signed.hash, signed.kid)
    jwks = published.json()
    assert all("d" not in key and "not_before" in key for key in jwks["keys"])
    # Verified with the published key alone, independently of the code under test.
    header_b64, payload_b64, signature_b64 = body["jws"].split(".")
    header = json.loads(b64url_decode(header_b64))
    [jwk] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    public = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    public.verify(b64url_decode(signature_b64), f"{header_b64}.{payload_b64}".encode())
    assert json.loads(b64url_decode(payload_b64)) == {
        "hash": signed.hash,
        "seq": 2,
        "time": audit.format_time(signed.time),
    }
    assert header["typ"] == "broen-audit-head+jws"


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


# --- no personal data -------------------------------------------------------------------------

PERSONAL = ("name", "national_id", "fnr", "fodselsnummer", "birth", "address", "text", "body")


def property_names(schema: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        names |= set(definition.get("properties", {}))
    return names


def test_no_personal_data_fields_exist_in_the_entry() -> None:
    names = property_names(AuditRecord.model_json_schema())
    columns = set(AuditEntry.__table__.columns.keys())
    assert {"participant_id", "caller", "purpose", "released", "withheld"} <= names
    for name in names | columns:
        assert not any(word in name.lower() for word in PERSONAL if word != "text"), name
        assert name.lower() not in {"text", "message", "body", "name"}, name


@pytest.mark.parametrize(
    "overrides",
    [
        {"purpose": "Ola Nordmann"},
        {"purpose": "lookup-01010750160"},
        {"request_id": "010107 50160"},
        {"released": ({"field": "x", "basis": "legal:a b"},)},
        {"national_id": "01010750160"},
    ],
)
def test_free_text_and_national_ids_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_record(**overrides)


def test_the_caller_comes_from_the_token_context() -> None:
    caller = CallerContext(
        kind="staff", orgnr="974760673", agency_type="skole", staff_id="s-1", roles=("veileder",)
    )
    assert AuditCaller.from_context(caller).roles == ("veileder",)


# --- the command ------------------------------------------------------------------------------


def test_broen_audit_verify_exits_0_when_intact_and_1_naming_the_entry(
    database_url: Callable[[str], str], keys_dir: Path, tmp_path: Path
) -> None:
    from broen_cli.main import app

    url = database_url("gateway")
    head_file = tmp_path / "head.json"

    async def prepare() -> None:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        await append_records(sessions, 4)
        await HeadSigner(sessions, AuditKeys.load(keys_dir), head_file).sign_now()
        await engine.dispose()

    asyncio.run(prepare())
    env = {"BROEN_GATEWAY_DATABASE_URL": url, "BROEN_KEYS_DIR": str(keys_dir)}
    runner = CliRunner()

    intact = runner.invoke(app, ["audit", "verify", "--head-file", str(head_file)], env=env)
    assert intact.exit_code == 0, intact.output
    assert "audit log intact: 4 entries" in intact.output

    async def cut_tail() -> None:
        engine = make_engine(url)
        await tamper(
            engine, "DELETE FROM audit_entry WHERE seq = 4", "DELETE FROM audit_signed_head"
        )
        await engine.dispose()

    asyncio.run(cut_tail())
    broken = runner.invoke(
        app, ["audit", "verify", "--head-file", str(head_file), "--json"], env=env
    )
    assert broken.exit_code == 1
    document = json.loads(broken.stdout)
    assert document["ok"] is False and document["first_bad_seq"] == 4
    assert "Traceback" not in broken.output

    missing = runner.invoke(
        app, ["audit", "verify", "--head-file", str(tmp_path / "nope.json")], env=env
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert "Traceback" not in missing.output
