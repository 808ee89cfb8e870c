"""The gateway's tamper-evident audit log: one hash chain, signed heads, verification.

Every decision that lets (or would let) a participant's data cross to a person or system
is appended as an entry. Entries never hold a national id, a name or message text: the
participant is named by Broen's internal UUID only, and every other value is a token
(no whitespace, no 11-digit number), which `AuditRecord` enforces.

Entry format (version 1), for an auditor who re-implements the check
--------------------------------------------------------------------
An entry is a JSON object with these members:

    seq             integer: 1 for the first entry, then +1 without gaps
    prev_hash       the previous entry's `hash`; for entry 1, 64 times "0"
    participant_id  the participant's internal UUID, lower-case with hyphens
    caller_orgnr    the caller's organisation number (9 digits), or null for a citizen
    content         an object:
        v               1 (the format version)
        id              the entry's UUID
        time            UTC, "YYYY-MM-DDTHH:MM:SS.ffffffZ"
        caller          {kind, agency_type, unit_id, staff_id, client_id, roles}
                        (kind: system, staff, citizen, or operator: the platform
                        operator running `broen retention`, named in staff_id by their
                        user name; absent values are null)
        purpose         the purpose the caller declared
        released        [{field, basis, rule, owner}]: field "<resource>.<field>";
                        basis "consent:<consent id>", "legal:<reference>" or
                        "own_organisation"; rule: the policy rule that decided; owner:
                        the organisation number of the organisation holding the value
        withheld        [{field, reason, rule}]: the precise reason (fields of a `never`
                        category are not named)
        policy_version  the version of the policy that decided
        request_id      the request's id
        action          only in an entry that records an operation on the participant's
                        data instead of a disclosure: {type, basis, reference}; type
                        "participant.deleted"; basis the retention rule
                        ("retention:<programme>:<years>y") or the ground for erasure
                        ("gdpr:17(1)(b)", ...); reference the controller's case, or null

    hash = lower-case hex SHA-256 of the canonical serialisation of the entry without its
           `hash`: UTF-8 JSON, object keys sorted, no whitespace (separators "," and ":"),
           non-ASCII characters written as themselves, only '"', '\\' and control
           characters escaped (\\b \\t \\n \\f \\r, else \\u00xx). In Python:
           json.dumps(entry, sort_keys=True, separators=(",", ":"),
           ensure_ascii=False).encode(). Values are strings, integers, null, arrays and
           objects only (no floats), so this is also RFC 8785 (JCS).

The table `audit_entry` stores seq, participant_id, caller_orgnr, prev_hash and hash as
columns and `content` as its canonical JSON text, so the hashed bytes are exactly

    {"caller_orgnr":<string or null>,"content":<content column>,"participant_id":"<uuid>",
     "prev_hash":"<hex>","seq":<n>}

(one line), which the verifier assembles without parsing JSON.

Signed heads
------------
The head of the chain (seq and hash of its last entry; seq 0 and the all-zero hash for an
empty chain) is signed, periodically and on demand, as a compact JWS: protected header
{"alg": "Ed25519", "kid": ..., "typ": "broen-audit-head+jws"}, payload the canonical JSON
of {"hash", "seq", "time"}. The keys are the gateway's audit keys (`audit-signing.jwks.json`
in BROEN_KEYS_DIR, not the token keys): the last key whose `not_before` has come signs,
every key verifies, and each carries `not_before` (and `not_after` once retired); a head
verifies only with the key its kid names and only if its time lies in that key's validity.
To rotate: `broen admin keys rotate audit-signing` (shared/signing.py). Signed heads are stored in
`audit_signed_head` and exported outside the database (`GET /api/v1/audit/head` and the
file `audit_head_file`), so cutting entries off the end is caught against the last
exported head: the chain alone cannot show that its tail is gone.

Verification (`verify`, `broen audit verify`) walks the chain from entry 1: sequence
numbers without gaps, each prev_hash equal to the previous hash, each hash recomputed; it
checks every stored head's signature and that the chain holds the hash each signed head
(and the exported head) names. The first bad entry is the first one that does not follow
from the verified prefix; a rewrite that recomputed every later hash is placed between the
last signed head that still matches and the first that does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time as _time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from gateway import store
from shared.db import sqlite_writes, sqlite_writing
from shared.internal_auth import CallerContext
from shared.keys import AUDIT_SIGNING_JWKS, replace_json_file
from shared.metrics import AUDIT_APPENDS, AUDIT_BATCHES, AUDIT_FAILURES
from shared.problems import ServiceUnavailable
from shared.signing import InvalidSignature, SigningKeyError, ValidityKeys, format_time, kid_of

log = logging.getLogger("broen.audit")

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
ALGORITHM = "Ed25519"
HEAD_TYPE = "broen-audit-head+jws"
VERIFY_BATCH = 10_000

# Identifiers only: no whitespace (so no names or message text), and no 11-digit number
# standing alone (the shape of a fødselsnummer or D-nummer).
_TOKEN = re.compile(r"[\w.:/@+§()\-]{1,200}")
_NATIONAL_ID_SHAPE = re.compile(r"\b\d{6}\s?\d{5}\b")


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("must be an identifier: 1-200 characters, no whitespace")
    if _NATIONAL_ID_SHAPE.search(value):
        raise ValueError("must not hold an 11-digit number (a national id never enters the log)")
    return value


Token = Annotated[str, AfterValidator(_token)]
Orgnr = Annotated[str, StringConstraints(pattern=r"^\d{9}$")]


class AuditCaller(BaseModel):
    """Who asked: the organisation and, where there is one, the unit, staff member and client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["system", "staff", "citizen", "operator"]
    orgnr: Orgnr | None = None
    agency_type: Token | None = None
    unit_id: Token | None = None
    staff_id: Token | None = None
    client_id: Token | None = None
    roles: tuple[Token, ...] = ()

    @classmethod
    def from_context(cls, caller: CallerContext) -> AuditCaller:
        # The citizen's own participant id is the entry's participant_id, not the caller's.
        return cls(
            kind=caller.kind,  # a service never reaches a decision; validation refuses it
            orgnr=caller.orgnr,
            agency_type=caller.agency_type,
            unit_id=caller.unit_id,
            staff_id=caller.staff_id,
            client_id=caller.client_id,
            roles=caller.roles,
        )


class ReleasedField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: Token
    # "consent:<consent id>", "legal:<reference>" or "own_organisation"
    basis: Token
    rule: Token | None = None
    # The organisation whose value was released: an auditor of that organisation finds
    # the entry among its disclosures.
    owner: Orgnr | None = None


class WithheldField(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: Token
    # The precise reason (the audit's, not the two a caller of another agency is shown).
    reason: Token
    rule: Token | None = None


class AuditAction(BaseModel):
    """What an operator did to the participant's data (module docstring: `action`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["participant.deleted"]
    basis: Token
    reference: Token | None = None


class AuditRecord(BaseModel):
    """One decision about one participant, as the gateway hands it to the audit log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    time: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    caller: AuditCaller
    participant_id: uuid.UUID
    purpose: Token
    released: tuple[ReleasedField, ...] = ()
    withheld: tuple[WithheldField, ...] = ()
    policy_version: Token
    request_id: Token
    action: AuditAction | None = None

    def content(self) -> dict[str, Any]:
        """The entry's `content` object (see the module docstring)."""
        content = {
            "v": FORMAT_VERSION,
            "id": str(self.id),
            "time": format_time(self.time),
            "caller": {
                "kind": self.caller.kind,
                "agency_type": self.caller.agency_type,
                "unit_id": self.caller.unit_id,
                "staff_id": self.caller.staff_id,
                "client_id": self.caller.client_id,
                "roles": list(self.caller.roles),
            },
            "purpose": self.purpose,
            "released": [item.model_dump() for item in self.released],
            "withheld": [item.model_dump() for item in self.withheld],
            "policy_version": self.policy_version,
            "request_id": self.request_id,
        }
        if self.action is not None:
            content["action"] = self.action.model_dump()
        return content


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """An entry before it has a place in the chain: what is stored besides seq and hashes."""

    participant_id: str
    caller_orgnr: str | None
    content: str
    # Organisations whose values crossed to the caller's organisation in this decision.
    disclosed_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: AuditRecord) -> PreparedEntry:
        owners = {f.owner for f in record.released if f.owner and f.owner != record.caller.orgnr}
        return cls(
            str(record.participant_id),
            record.caller.orgnr,
            canonical_json(record.content()),
            tuple(sorted(owners)),
        )


def entry_hash(
    *, seq: int, prev_hash: str, participant_id: str, caller_orgnr: str | None, content: str
) -> str:
    """SHA-256 of the canonical entry (module docstring), assembled from the stored columns."""
    orgnr = "null" if caller_orgnr is None else encode_basestring(caller_orgnr)
    data = (
        f'{{"caller_orgnr":{orgnr},"content":{content},'
        f'"participant_id":{encode_basestring(participant_id)},'
        f'"prev_hash":{encode_basestring(prev_hash)},"seq":{seq}}}'
    )
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppendedEntry:
    seq: int
    hash: str


async def append(
    session: AsyncSession, records: Sequence[AuditRecord | PreparedEntry]
) -> list[AppendedEntry]:
    """Append `records`, in order, at the end of the chain; flushes, never commits.

    The chain is locked from reading its head until the caller's transaction ends, so
    replicas append one after another; the entries are durable once that commits.
    """
    prepared = [r if isinstance(r, PreparedEntry) else PreparedEntry.of(r) for r in records]
    if not prepared:
        return []
    await store.lock_audit_chain(session)
    seq, prev = await store.audit_chain_head(session) or (0, GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    disclosures: list[dict[str, Any]] = []
    appended: list[AppendedEntry] = []
    for entry in prepared:
        seq += 1
        digest = entry_hash(
            seq=seq,
            prev_hash=prev,
            participant_id=entry.participant_id,
            caller_orgnr=entry.caller_orgnr,
            content=entry.content,
        )
        rows.append(
            {
                "seq": seq,
                "participant_id": entry.participant_id,
                "caller_orgnr": entry.caller_orgnr,
                "content": entry.content,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        disclosures.extend({"orgnr": orgnr, "seq": seq} for orgnr in entry.disclosed_by)
        appended.append(AppendedEntry(seq, digest))
        prev = digest
    await store.insert_audit_entries(session, rows, disclosures)
    return appended


class AuditUnavailable(ServiceUnavailable):
    type = "audit-unavailable"
    title = "Audit log unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The decision could not be written to the audit log; nothing was released."
        )


_STOP = object()


class AuditWriter:
    """Group commit: concurrent requests' entries are appended in one transaction each batch.

    `await writer.write(record)` returns only after the transaction holding the entry has
    committed (or raises `AuditUnavailable`). While one batch commits the next one gathers;
    a batch holds at most `max_batch` entries. Under load (the previous batch held more than
    one entry) the writer also waits up to `max_wait_seconds` for more; when idle it does
    not wait, so a lone request pays no delay.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_batch: int = 256,
        max_wait_seconds: float = 0.002,
    ) -> None:
        if max_batch < 1 or max_wait_seconds < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_seconds not negative")
        self._sessionmaker = sessionmaker
        self.max_batch = max_batch
        self.max_wait_seconds = max_wait_seconds
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Figures for benchmarks: batches committed and entries written.
        self.batches = 0
        self.entries = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def aclose(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None or self._closing:
            return
        self._closing = True
        await self._queue.put(_STOP)
        await self._task

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def write(self, record: AuditRecord) -> AppendedEntry:
        # Serialised here, in the caller's task: a record that cannot be serialised fails
        # its own request, never the batch it would have joined.
        entry = PreparedEntry.of(record)
        if self._task is None or self._task.done() or self._closing:
            raise AuditUnavailable()
        future: asyncio.Future[AppendedEntry] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, future))
        return await future

    async def _run(self) -> None:
        sqlite_writes.set(True)
        loop = asyncio.get_running_loop()
        under_load = False
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch: list[tuple[PreparedEntry, asyncio.Future[AppendedEntry]]] = [first]
            stop = False
            deadline = loop.time() + (self.max_wait_seconds if under_load else 0.0)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            item = await self._queue.get()
                    except TimeoutError:
                        break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            under_load = len(batch) > 1
            await self._commit(batch)
            if stop:
                return

    async def _commit(
        self, batch: list[tuple[PreparedEntry, asyncio.Future[AppendedEntry]]]
    ) -> None:
        try:
            async with self._sessionmaker() as session, session.begin():
                appended = await append(session, [entry for entry, _ in batch])
        except BaseException as error:
            # The type only: a database error's text can carry the statement's parameters.
            log.error("audit batch of %d entries failed: %s", len(batch), type(error).__name__)
            AUDIT_FAILURES.inc(len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(AuditUnavailable())
            if not isinstance(error, Exception):
                raise
            return
        self.batches += 1
        self.entries += len(batch)
        AUDIT_BATCHES.inc()
        AUDIT_APPENDS.inc(len(batch))
        for (_, future), result in zip(batch, appended, strict=True):
            if not future.done():  # a caller that gave up still has its entry written
                future.set_result(result)


# ---------------------------------------------------------------------------- signing keys

# The audit key file's errors keep the name the gateway has always raised.
AuditKeyError = SigningKeyError


class InvalidHead(InvalidSignature):
    """A signed head that does not verify; the message says why."""


@dataclass(frozen=True)
class HeadClaims:
    seq: int
    hash: str
    time: datetime
    kid: str


class AuditKeys(ValidityKeys):
    """The audit-head keys (`audit-signing.jwks.json`): the newest begun one signs, all verify."""

    filename = AUDIT_SIGNING_JWKS
    algorithm = ALGORITHM
    label = "audit keys"

    def sign_head(self, *, seq: int, hash: str, time: datetime) -> str:
        payload = canonical_json({"hash": hash, "seq": seq, "time": format_time(time)})
        return self.sign(payload.encode(), typ=HEAD_TYPE, at=time)

    def verify_head(self, token: str) -> HeadClaims:
        """The head a compact JWS signs, or InvalidHead saying what is wrong."""
        try:
            verified = self.verify(token, typ=HEAD_TYPE)
        except InvalidSignature as problem:
            raise InvalidHead(str(problem)) from None
        try:
            claims = json.loads(verified.payload)
            seq, digest = claims["seq"], claims["hash"]
            moment = datetime.fromisoformat(claims["time"].replace("Z", "+00:00"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InvalidHead("the signed payload is not a head") from None
        if type(seq) is not int or seq < 0 or not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
            raise InvalidHead("the signed payload is not a head")
        try:
            verified.check_signed_at(moment)
        except InvalidSignature as problem:
            raise InvalidHead(str(problem)) from None
        return HeadClaims(seq=seq, hash=digest, time=moment, kid=verified.kid)


# ------------------------------------------------------------------------------ heads


@dataclass(frozen=True)
class SignedHead:
    seq: int
    hash: str
    time: datetime
    kid: str
    jws: str

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "time": format_time(self.time),
            "kid": self.kid,
            "jws": self.jws,
        }


async def sign_head(
    session: AsyncSession, keys: AuditKeys, *, now: datetime | None = None
) -> SignedHead:
    """Sign the chain's current head and store it; flushes, never commits."""
    moment = now or datetime.now(UTC)
    seq, digest = await store.audit_chain_head(session) or (0, GENESIS_HASH)
    token = keys.sign_head(seq=seq, hash=digest, time=moment)
    kid = kid_of(token)
    await store.add_signed_head(session, seq=seq, hash=digest, signed_at=moment, kid=kid, jws=token)
    return SignedHead(seq=seq, hash=digest, time=moment, kid=kid, jws=token)


async def latest_signed_head(session: AsyncSession) -> SignedHead | None:
    row = await store.latest_signed_head(session)
    if row is None:
        return None
    return SignedHead(seq=row.seq, hash=row.hash, time=row.signed_at, kid=row.kid, jws=row.jws)


def export_head(path: Path, head: SignedHead) -> bool:
    """Write `head` to `path` atomically, unless the file already holds a later head.

    Returns whether the file was written. The file lives outside the database, so a chain
    whose tail was cut off no longer reaches the head it names.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
        if int(json.loads(path.read_text())["seq"]) > head.seq:
            return False
    replace_json_file(path, head.as_json())
    return True


class HeadSigner:
    """Signs the head every `interval_seconds` (when the chain grew) and on `sign_now()`,
    stores it, and exports it to `head_file` after the commit."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        keys: AuditKeys,
        head_file: Path,
        *,
        interval_seconds: float = 60.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.keys = keys
        self.head_file = head_file
        self.interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def sign_now(self, *, only_if_grown: bool = False) -> SignedHead:
        with sqlite_writing(True):
            async with self._sessionmaker() as session, session.begin():
                head = None
                if only_if_grown:
                    latest = await latest_signed_head(session)
                    current = await store.audit_chain_head(session)
                    if latest is not None and latest.seq == (current or (0, ""))[0]:
                        head = latest
                if head is None:
                    head = await sign_head(session, self.keys)
        await asyncio.to_thread(export_head, self.head_file, head)
        return head

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="audit-head-signer")

    async def aclose(self) -> None:
        """Stop, and sign and export a last head so the file names the final state.

        The loop is asked to stop, not cancelled: a signing under way finishes its
        transaction rather than having its database connection cut mid-statement."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        try:
            await self.sign_now(only_if_grown=True)
        except Exception as error:
            log.error("signing the audit head at shutdown failed: %s", type(error).__name__)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sign_now(only_if_grown=True)
            except Exception as error:
                log.error("signing the audit head failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)


# ------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class Finding:
    """What is wrong; `seq` is the first entry it concerns (None: a head, not an entry)."""

    seq: int | None
    what: str


@dataclass
class VerifyReport:
    entries: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    heads_checked: int = 0
    exported_head_seq: int | None = None
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [finding.seq for finding in self.findings if finding.seq is not None]
        return min(seqs) if seqs else None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "signed_heads_checked": self.heads_checked,
            "exported_head_seq": self.exported_head_seq,
            "first_bad_seq": self.first_bad_seq,
            "findings": [{"seq": f.seq, "what": f.what} for f in self.findings],
            "seconds": round(self.seconds, 3),
        }


def read_exported_head(path: Path) -> str:
    """The JWS of the head exported to `path` (ValueError if the file is not a head)."""
    try:
        token = json.loads(path.read_text())["jws"]
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{path} does not hold an exported audit head") from None
    if not isinstance(token, str):
        raise ValueError(f"{path} does not hold an exported audit head")
    return token


async def verify(
    connection: AsyncConnection,
    keys: AuditKeys,
    *,
    exported_head: str | None = None,
    batch_size: int = VERIFY_BATCH,
) -> VerifyReport:
    """Check the whole chain, every stored signed head and the exported head (its JWS)."""
    started = _time.perf_counter()
    report = VerifyReport()
    # seq -> [(what the head is called, hash it signs)]
    expected_hashes: dict[int, list[tuple[str, str]]] = {}

    for head_id, seq, digest, signed_at, kid, token in await store.all_signed_heads(connection):
        report.heads_checked += 1
        label = f"stored head #{head_id} (seq {seq}, signed {format_time(signed_at)})"
        try:
            claims = keys.verify_head(token)
        except InvalidHead as problem:
            report.findings.append(Finding(None, f"{label}: {problem}"))
            continue
        if (claims.seq, claims.hash, claims.kid) != (seq, digest, kid):
            report.findings.append(Finding(None, f"{label}: its columns differ from what it signs"))
            continue
        expected_hashes.setdefault(claims.seq, []).append((label, claims.hash))
    if exported_head is not None:
        try:
            claims = keys.verify_head(exported_head)
        except InvalidHead as problem:
            report.findings.append(Finding(None, f"exported head: {problem}"))
        else:
            report.exported_head_seq = claims.seq
            label = f"exported head (seq {claims.seq}, signed {format_time(claims.time)})"
            expected_hashes.setdefault(claims.seq, []).append((label, claims.hash))

    expected, prev = 1, GENESIS_HASH
    last_matching_head = 0
    head_mismatch = False
    broken = False
    sha256 = hashlib.sha256
    quote = encode_basestring
    while not broken:
        rows = await store.audit_entries_after(connection, after=expected - 1, limit=batch_size)
        if not rows:
            break
        for seq, participant_id, orgnr, content, prev_hash, digest in rows:
            if seq != expected:
                report.findings.append(
                    Finding(expected, f"entry {expected} is missing (the next entry is {seq})")
                )
                broken = True
                break
            if prev_hash != prev:
                report.findings.append(
                    Finding(
                        seq,
                        f"entry {seq}: prev_hash is not the hash of entry {seq - 1} (entry "
                        f"{seq - 1} was rewritten, or entries were inserted, removed or moved)",
                    )
                )
                broken = True
                break
            data = (
                f'{{"caller_orgnr":{"null" if orgnr is None else quote(orgnr)},'
                f'"content":{content},"participant_id":{quote(participant_id)},'
                f'"prev_hash":"{prev}","seq":{seq}}}'
            )
            if sha256(data.encode()).hexdigest() != digest:
                report.findings.append(
                    Finding(seq, f"entry {seq}: its hash does not match its contents (edited)")
                )
                broken = True
                break
            heads = expected_hashes.get(seq)
            if heads is not None:
                for label, signed in heads:
                    if signed == digest:
                        last_matching_head = max(last_matching_head, seq)
                    elif not head_mismatch:
                        head_mismatch = True
                        first = last_matching_head + 1
                        report.findings.append(
                            Finding(
                                first,
                                f"entry {seq}'s hash differs from the {label}: the chain was "
                                f"rewritten somewhere in entries {first}..{seq}",
                            )
                        )
            prev = digest
            expected += 1
            report.entries += 1
    report.last_seq, report.last_hash = expected - 1, prev

    if not broken:
        for seq in sorted(s for s in expected_hashes if s > report.last_seq):
            label = expected_hashes[seq][0][0]
            report.findings.append(
                Finding(
                    report.last_seq + 1,
                    f"entries {report.last_seq + 1}..{seq} are missing: the chain ends at "
                    f"{report.last_seq}, the {label} covers {seq} (the tail was cut off)",
                )
            )
            break
    report.findings.sort(key=lambda f: (f.seq is None, f.seq or 0))
    report.seconds = _time.perf_counter() - started
    return report
