"""Key rotation without downtime: old tokens, heads, receipts and ciphertext keep working,
new ones use the new keys, and running processes follow the key files without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from sqlalchemy import select
from typer.testing import CliRunner, Result

import shared.keys
from broen_cli.keys import keys_app, wrapped_keys
from gateway import audit
from gateway.audit import AuditKeys
from gateway.events.webhooks import secret_owner
from gateway.models import Subscription
from gateway.tokens import PRUNE_AFTER, AccessTokens, load_token_keys
from services.consent.models import ParticipantKey as ConsentKey
from services.consent.receipts import ReceiptKeys, receipt_claims, sign_receipt, verify_receipt
from services.participant.models import ParticipantKey
from shared.crypto import Keyring, WrappedKey
from shared.data_keys import rewrap
from shared.db import make_engine, make_sessionmaker
from shared.keys import (
    AUDIT_SIGNING_JWKS,
    TOKEN_SIGNING_JWKS,
    RotationRefused,
    data_keys_file,
    init_keys_dir,
    prune_retired_keys,
    rotate_master_key,
    rotate_signing_keys,
)
from shared.problems import Unauthorized
from shared.signing import kid_of
from tests.consent.test_receipts import make_consent
from tests.system import conftest as system
from tests.system.conftest import Stack

pytestmark = pytest.mark.anyio

# The whole stack in-process (tests/system/conftest.py), on this module's own key directory.
stack = system.stack
consents = system.consents
gateway_overrides = system.gateway_overrides
service_overrides = system.service_overrides

ISSUER = "https://broen.test"
SKOLE = "310123455"
KARI, OLA = "15080551212", "02030653478"
AT_ONCE = timedelta(0)  # a rotation's new key signs or wraps from now on


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A key directory of the test's own (the session's shared one must not rotate)."""
    directory = tmp_path / "keys"
    init_keys_dir(directory)
    return directory


@pytest.fixture
def follow_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running processes look at their key files on every use instead of every 10 s."""
    monkeypatch.setattr(shared.keys, "KEY_FILE_CHECK_SECONDS", 0.0)


def broen_keys(*arguments: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(keys_app, [*arguments, "--json"], env=env)


async def broen_keys_async(*arguments: str, env: dict[str, str] | None = None) -> Result:
    """The CLI from a test that runs in an event loop (the command runs its own)."""
    return await asyncio.to_thread(broen_keys, *arguments, env=env)


def access_tokens(keys_dir: Path) -> AccessTokens:
    """The gateway's token signer and verifier as a replica starts it."""
    return AccessTokens(load_token_keys(keys_dir), issuer=ISSUER, lifetime_seconds=300)


def system_token(tokens: AccessTokens) -> str:
    issued = tokens.issue_system_token(
        client_id="skole-sis", orgnr=SKOLE, agency_type="skole", scopes=["participants:read"]
    )
    return str(issued["access_token"])


# --- files ------------------------------------------------------------------------------------


def test_a_rotation_replaces_the_file_whole_private_and_prints_no_key_material(
    keys_dir: Path,
) -> None:
    before = json.loads((keys_dir / TOKEN_SIGNING_JWKS).read_text())["keys"][0]

    result = broen_keys("rotate", "token-signing", "--dir", str(keys_dir), "--activate-in", "0")

    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    after = json.loads((keys_dir / TOKEN_SIGNING_JWKS).read_text())["keys"]
    assert [key["kid"] for key in after] == [before["kid"], done["kid"]]
    assert after[0]["d"] == before["d"] and after[0]["not_after"] == done["retired_after"]
    master = broen_keys("rotate", "master", "--component", "consent", "--dir", str(keys_dir))
    assert master.exit_code == 0, master.output
    master_keys = json.loads((keys_dir / data_keys_file("consent")).read_text())["master_keys"]
    for name in (TOKEN_SIGNING_JWKS, data_keys_file("consent")):
        assert stat.S_IMODE((keys_dir / name).stat().st_mode) == 0o600
    assert not any(path.name.startswith(".") for path in keys_dir.iterdir())  # no temporaries
    assert not any(key["d"] in result.output for key in after)
    assert not any(value in master.output for value in master_keys.values())


def test_a_second_rotation_waits_until_the_first_key_signs(keys_dir: Path) -> None:
    first = broen_keys("rotate", "audit-signing", "--dir", str(keys_dir))
    second = broen_keys("rotate", "audit-signing", "--dir", str(keys_dir))

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1
    assert "rotate again after that" in second.output
    assert len(json.loads((keys_dir / AUDIT_SIGNING_JWKS).read_text())["keys"]) == 2


def test_a_key_file_that_cannot_be_read_leaves_the_running_keys_in_use(
    keys_dir: Path, follow_at_once: None
) -> None:
    tokens = access_tokens(keys_dir)
    token = system_token(tokens)
    (keys_dir / TOKEN_SIGNING_JWKS).write_text("{not json")

    assert tokens.verify(token).client_id == "skole-sis"
    assert kid_of(system_token(tokens)) == kid_of(token)


# --- access tokens ----------------------------------------------------------------------------


def test_a_token_from_before_a_rotation_still_verifies_and_new_tokens_use_the_new_key(
    keys_dir: Path, follow_at_once: None
) -> None:
    running = access_tokens(keys_dir)
    old = system_token(running)

    rotated = broen_keys("rotate", "token-signing", "--dir", str(keys_dir), "--activate-in", "0")
    assert rotated.exit_code == 0, rotated.output
    done = json.loads(rotated.stdout)
    new = system_token(running)

    assert kid_of(old) == done["retired_kid"] and kid_of(new) == done["kid"]
    for token in (old, new):
        assert running.verify(token).client_id == "skole-sis"
        assert access_tokens(keys_dir).verify(token).client_id == "skole-sis"  # a new replica
    published = {key["kid"] for key in running.public_jwks()["keys"]}
    assert published == {done["kid"], done["retired_kid"]}


def test_a_replica_that_has_not_looked_at_the_file_yet_verifies_the_new_key_at_once(
    keys_dir: Path,
) -> None:
    # No follow_at_once: the running replica would look at the file only in 10 s.
    running = access_tokens(keys_dir)
    old = system_token(running)
    rotate_signing_keys(keys_dir, "token-signing", now=datetime.now(UTC), delay=AT_ONCE)

    from_a_newer_replica = system_token(access_tokens(keys_dir))

    assert kid_of(from_a_newer_replica) != kid_of(old)
    assert kid_of(system_token(running)) == kid_of(old)  # still signing with what it read
    assert running.verify(from_a_newer_replica).client_id == "skole-sis"  # unknown kid: re-read


def test_a_new_token_key_is_published_before_it_signs(keys_dir: Path, follow_at_once: None) -> None:
    running = access_tokens(keys_dir)
    old_kid = kid_of(system_token(running))

    done = rotate_signing_keys(
        keys_dir, "token-signing", now=datetime.now(UTC), delay=timedelta(minutes=2)
    )

    assert kid_of(system_token(running)) == old_kid
    published = {key["kid"]: key for key in running.public_jwks()["keys"]}
    assert done["kid"] in published and published[done["kid"]]["not_before"]
    assert all("d" not in key for key in published.values())


def test_a_retired_token_key_is_pruned_once_its_tokens_expired_and_then_verifies_nothing(
    keys_dir: Path, follow_at_once: None
) -> None:
    running = access_tokens(keys_dir)
    old = system_token(running)
    now = datetime.now(UTC)
    done = rotate_signing_keys(keys_dir, "token-signing", now=now, delay=AT_ONCE)

    # Not yet: a token it signed may still be valid.
    too_early = broen_keys("prune", "token-signing", "--dir", str(keys_dir))
    assert too_early.exit_code == 0 and json.loads(too_early.stdout) == {"dropped": []}
    assert prune_retired_keys(keys_dir, "token-signing", now=now, keep_for=PRUNE_AFTER) == []
    # Once every token it signed has expired (pretending that time has passed):
    later = now + timedelta(seconds=shared.keys.RETIRE_GRACE_SECONDS) + PRUNE_AFTER
    dropped = prune_retired_keys(
        keys_dir, "token-signing", now=later + timedelta(seconds=1), keep_for=PRUNE_AFTER
    )

    assert dropped == [done["retired_kid"]]
    assert [key.kid for key in load_token_keys(keys_dir).keys] == [done["kid"]]
    for verifier in (running, access_tokens(keys_dir)):
        with pytest.raises(Unauthorized):
            verifier.verify(old)


def test_a_retired_token_key_vouches_for_no_token_issued_after_it_retired(keys_dir: Path) -> None:
    old_key = load_token_keys(keys_dir).signer.key
    done = rotate_signing_keys(keys_dir, "token-signing", now=datetime.now(UTC), delay=AT_ONCE)
    # Someone holding the old key signs a token dated after the key retired.
    issued = int(datetime.fromisoformat(done["retired_after"]).timestamp()) + 5
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "skole-sis",
        "kind": "system",
        "client_id": "skole-sis",
        "orgnr": SKOLE,
        "agency_type": "skole",
        "scope": "participants:read",
        "iat": issued,
        "exp": issued + 60,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": "Ed25519", "typ": "at+jwt", "kid": old_key.kid}
    forged = jwt.encode(header, claims, old_key, algorithms=["Ed25519"])
    honest = jwt.encode(
        header, {**claims, "iat": int(time.time())}, old_key, algorithms=["Ed25519"]
    )

    assert access_tokens(keys_dir).verify(honest).client_id == "skole-sis"
    with pytest.raises(Unauthorized):
        access_tokens(keys_dir).verify(forged)


def test_token_keys_made_before_rotation_existed_still_load_and_rotate(keys_dir: Path) -> None:
    made = json.loads((keys_dir / TOKEN_SIGNING_JWKS).read_text())["keys"][0]
    legacy = {name: value for name, value in made.items() if name not in {"alg", "not_before"}}
    (keys_dir / TOKEN_SIGNING_JWKS).unlink()
    shared.keys.write_secret_json(keys_dir / TOKEN_SIGNING_JWKS, {"keys": [legacy]})
    old = system_token(access_tokens(keys_dir))

    done = rotate_signing_keys(keys_dir, "token-signing", now=datetime.now(UTC), delay=AT_ONCE)

    tokens = access_tokens(keys_dir)
    assert kid_of(system_token(tokens)) == done["kid"]
    assert tokens.verify(old).client_id == "skole-sis"
    assert "not_before" not in tokens.public_jwks()["keys"][0]


# --- audit heads and receipts -----------------------------------------------------------------


async def test_audit_heads_signed_before_a_rotation_still_verify_and_new_heads_use_the_new_key(
    keys_dir: Path, database_url: Callable[[str], str], follow_at_once: None
) -> None:
    engine = make_engine(database_url("gateway"))
    sessions = make_sessionmaker(engine)
    running = AuditKeys.load(keys_dir)
    try:
        async with sessions.begin() as session:
            old = await audit.sign_head(session, running)
        rotated = await broen_keys_async(
            "rotate", "audit-signing", "--dir", str(keys_dir), "--activate-in", "0"
        )
        assert rotated.exit_code == 0, rotated.output
        async with sessions.begin() as session:
            new = await audit.sign_head(session, running)
        async with engine.connect() as connection:
            report = await audit.verify(connection, AuditKeys.from_jwks(running.public_jwks()))
    finally:
        await engine.dispose()

    done = json.loads(rotated.stdout)
    assert (old.kid, new.kid) == (done["retired_kid"], done["kid"])
    assert report.ok, report.findings
    assert report.heads_checked == 2


def test_receipts_signed_before_a_rotation_still_verify_and_new_ones_use_the_new_key(
    keys_dir: Path, follow_at_once: None
) -> None:
    running = ReceiptKeys.load(keys_dir)
    consent = make_consent()

    def receipt() -> str:
        return sign_receipt(running, receipt_claims(consent, issuer=ISSUER, now=datetime.now(UTC)))

    old = receipt()
    done = rotate_signing_keys(keys_dir, "receipt-signing", now=datetime.now(UTC), delay=AT_ONCE)
    new = receipt()

    assert (kid_of(old), kid_of(new)) == (done["retired_kid"], done["kid"])
    published = ReceiptKeys.from_jwks(running.public_jwks())
    for token in (old, new):
        assert verify_receipt(published, token)["consent_id"] == str(consent.id)


# --- master keys ------------------------------------------------------------------------------


def test_a_replica_unwraps_a_data_key_wrapped_under_a_master_key_it_has_not_read_yet(
    keys_dir: Path,
) -> None:
    running = Keyring.load(keys_dir, "participant")  # looks at the file only in 10 s
    old_key, old_wrapped = running.new_data_key("p1")
    rotate_master_key(keys_dir, "participant", now=datetime.now(UTC), delay=AT_ONCE)

    new_key, new_wrapped = Keyring.load(keys_dir, "participant").new_data_key("p2")

    assert new_wrapped.kid != old_wrapped.kid
    assert running.unwrap(new_wrapped, "p2") == new_key
    assert running.unwrap(old_wrapped, "p1") == old_key


def test_a_new_master_key_wraps_only_from_its_time(keys_dir: Path, follow_at_once: None) -> None:
    running = Keyring.load(keys_dir, "consent")
    before = running.current

    done = rotate_master_key(keys_dir, "consent", now=datetime.now(UTC), delay=timedelta(hours=1))

    assert running.current == before == done["previous_kid"]
    assert running.new_data_key("p1")[1].kid == before
    refused = broen_keys("rewrap", "--component", "consent", "--dir", str(keys_dir))
    assert refused.exit_code == 1 and "wraps only from" in refused.output


async def test_rewrap_moves_stored_keys_to_the_current_master_key_in_batches_and_reruns(
    keys_dir: Path, database_url: Callable[[str], str]
) -> None:
    """The gateway's webhook secrets and a service's participant keys, in one go each."""
    gateway_engine = make_engine(database_url("gateway"))
    consent_engine = make_engine(database_url("consent"))
    try:
        gateway_ring = Keyring.load(keys_dir, "gateway")
        consent_ring = Keyring.load(keys_dir, "consent")
        secrets_ = {uuid.uuid4(): os.urandom(32) for _ in range(3)}
        data_keys: dict[uuid.UUID, bytes] = {}
        async with make_sessionmaker(gateway_engine).begin() as session:
            for subscription_id, secret in secrets_.items():
                session.add(subscription(gateway_ring, subscription_id, secret))
        async with make_sessionmaker(consent_engine).begin() as session:
            for _ in range(5):
                participant_id = uuid.uuid4()
                data_keys[participant_id], wrapped = consent_ring.new_data_key(str(participant_id))
                session.add(
                    ConsentKey(
                        participant_id=participant_id, kid=wrapped.kid, wrapped_key=wrapped.wrapped
                    )
                )
        old_kid = consent_ring.current
        for component in ("gateway", "consent"):
            rotate_master_key(keys_dir, component, now=datetime.now(UTC), delay=AT_ONCE)

        rings = {c: Keyring.load(keys_dir, c) for c in ("gateway", "consent")}
        engines = {"gateway": gateway_engine, "consent": consent_engine}
        done = {
            c: await rewrap(make_sessionmaker(engines[c]), rings[c], wrapped_keys(c), batch_size=2)
            for c in rings
        }
        again = await rewrap(
            make_sessionmaker(consent_engine), rings["consent"], wrapped_keys("consent")
        )

        assert (done["gateway"].rewrapped, done["consent"].rewrapped) == (3, 5)
        assert done["consent"].by_kid == {rings["consent"].current: 5}
        assert rings["consent"].current != old_kid
        assert (again.rewrapped, again.failed) == (0, 0)
        async with make_sessionmaker(gateway_engine)() as session:
            for row in (await session.execute(select(Subscription))).scalars():
                assert row.secret_kid == rings["gateway"].current
                assert (
                    rings["gateway"].unwrap(
                        WrappedKey(row.secret_kid, row.secret_wrapped), secret_owner(row.id)
                    )
                    == secrets_[row.id]
                )
        async with make_sessionmaker(consent_engine)() as session:
            for key in (await session.execute(select(ConsentKey))).scalars():
                assert (
                    rings["consent"].unwrap(
                        WrappedKey(key.kid, key.wrapped_key), str(key.participant_id)
                    )
                    == data_keys[key.participant_id]
                )
    finally:
        await gateway_engine.dispose()
        await consent_engine.dispose()


async def test_a_key_that_will_not_unwrap_is_counted_and_left_alone(
    keys_dir: Path, database_url: Callable[[str], str]
) -> None:
    engine = make_engine(database_url("consent"))
    try:
        async with make_sessionmaker(engine).begin() as session:
            session.add(ConsentKey(participant_id=uuid.uuid4(), kid="mk-gone", wrapped_key=b"x"))
        done = await rewrap(
            make_sessionmaker(engine), Keyring.load(keys_dir, "consent"), wrapped_keys("consent")
        )
    finally:
        await engine.dispose()

    assert (done.rewrapped, done.failed) == (0, 1)
    assert done.by_kid == {"mk-gone": 1}


def subscription(keyring: Keyring, subscription_id: uuid.UUID, secret: bytes) -> Subscription:
    wrapped = keyring.wrap(secret, secret_owner(subscription_id))
    now = datetime.now(UTC)
    return Subscription(
        id=subscription_id,
        orgnr=SKOLE,
        agency_type="skole",
        client_id="skole-sis",
        url="https://skole.example/hooks",
        event_types=["assignment.started"],
        purpose="oppfolging",
        secret_kid=wrapped.kid,
        secret_wrapped=wrapped.wrapped,
        status="active",
        disabled_reason=None,
        cursor=0,
        created_at=now,
        changed_at=now,
    )


# --- the whole stack, running, across rotations -----------------------------------------------


async def stored_kids(stack: Stack) -> dict[str, str]:
    async with stack.participant.state.sessionmaker() as session:
        rows = await session.execute(select(ParticipantKey.participant_id, ParticipantKey.kid))
        return {str(participant_id): kid for participant_id, kid in rows}


async def test_a_running_stack_serves_old_and_new_tokens_and_ciphertext_across_rotations(
    stack: Stack, keys_dir: Path, follow_at_once: None
) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    old_headers = await stack.as_org(skole)
    kari = await register(stack, old_headers, KARI)
    await stack.follow(skole, kari)
    env = {
        "BROEN_KEYS_DIR": str(keys_dir),
        "BROEN_PARTICIPANT_DATABASE_URL": stack.participant_settings.database_url,
    }

    # The operator rotates the token key now, and the participant service's master key (a
    # rotation made two minutes ago, so its grace has passed), while everything serves.
    rotated = await broen_keys_async("rotate", "token-signing", "--activate-in", "0", env=env)
    assert rotated.exit_code == 0, rotated.output
    tokens = json.loads(rotated.stdout)
    master = rotate_master_key(
        keys_dir, "participant", now=datetime.now(UTC) - timedelta(minutes=2), delay=AT_ONCE
    )
    new_headers = await stack.as_org(skole)
    ola = await register(stack, new_headers, OLA)
    await stack.follow(skole, ola)

    assert kid_of(old_headers["Authorization"].split()[1]) == tokens["retired_kid"]
    assert kid_of(new_headers["Authorization"].split()[1]) == tokens["kid"]
    jwks = (await stack.http.get("/.well-known/jwks.json")).json()
    assert {tokens["kid"], tokens["retired_kid"]} <= {key["kid"] for key in jwks["keys"]}
    assert await stored_kids(stack) == {kari: master["previous_kid"], ola: master["kid"]}
    await read_both(stack, kari, ola, old_headers, new_headers)

    # The old master key cannot go while Kari's data key is wrapped under it.
    refused = await broen_keys_async(
        "drop-master", master["previous_kid"], "--component", "participant", env=env
    )
    assert refused.exit_code == 1 and "still wrapped under" in refused.output
    rewrapped = await broen_keys_async("rewrap", "--component", "participant", env=env)
    assert rewrapped.exit_code == 0, rewrapped.output
    assert json.loads(rewrapped.stdout)["rewrapped"] == 1
    assert await stored_kids(stack) == {kari: master["kid"], ola: master["kid"]}
    dropped = await broen_keys_async(
        "drop-master", master["previous_kid"], "--component", "participant", env=env
    )
    assert dropped.exit_code == 0, dropped.output

    on_file = json.loads((keys_dir / data_keys_file("participant")).read_text())
    assert list(on_file["master_keys"]) == [master["kid"]]
    await read_both(stack, kari, ola, old_headers, new_headers)


async def register(stack: Stack, headers: dict[str, str], national_id: str) -> str:
    body = {"national_id": national_id, "name": f"Deltaker {national_id[:4]}", "source_system": "t"}
    created = await stack.http.post("/api/v1/participants", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def read_both(stack: Stack, kari: str, ola: str, *headers: dict[str, str]) -> None:
    for participant_id, national_id in ((kari, KARI), (ola, OLA)):
        for each in headers:
            read = await stack.http.get(f"/api/v1/participants/{participant_id}", headers=each)
            assert read.status_code == 200, read.text
            assert read.json()["name"] == f"Deltaker {national_id[:4]}"


def test_dropping_the_current_or_a_still_wrapping_master_key_is_refused(keys_dir: Path) -> None:
    current = Keyring.load(keys_dir, "messaging").current
    refused_current = broen_keys(
        "drop-master", current, "--component", "messaging", "--dir", str(keys_dir)
    )
    done = rotate_master_key(keys_dir, "messaging", now=datetime.now(UTC), delay=AT_ONCE)

    with pytest.raises(RotationRefused, match="may still wrap"):
        shared.keys.drop_master_key(
            keys_dir, "messaging", done["previous_kid"], now=datetime.now(UTC)
        )
    assert refused_current.exit_code == 1 and "is the current one" in refused_current.output
