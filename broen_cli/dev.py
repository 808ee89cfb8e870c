"""`broen dev ...`: the embedded default for local trials. Refused outside dev mode."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from joserfc import jwt
from joserfc.jwk import OKPKey
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.no import fodselsnummer

from broen_cli.common import JsonOption, emit, fail, require_dev_mode, settings_for
from broen_cli.directory import add_organisation, in_directory
from gateway.oauth import (
    ORGANISATION_SCOPES,
    AuthRuntime,
    ClientAlreadyRegistered,
    register_client,
)
from gateway.settings import GatewaySettings
from gateway.tokens import AccessTokens
from services.consent import service as consent_service
from services.consent.schemas import Notice, RecordedConsent
from services.participant import assignments
from services.participant import directory as participant_directory
from services.participant import guardians as participant_guardians
from services.participant import service as participant_service
from services.participant import store as participant_store
from services.participant.errors import OrganisationNotFound, StaffNotFound
from services.participant.schemas import (
    AssignmentCreate,
    CitizenIdentity,
    OrganisationCreate,
    ParticipantCreate,
    ProgrammeCreate,
    StaffCreate,
    StaffRead,
    UnitCreate,
)
from shared.crypto import Keyring
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import CallerContext
from shared.keys import write_secret_json
from shared.settings import ConfigurationError, ensure_dev_mode_is_safe
from web import demo
from web.keys import client_public_jwks, init_web_keys
from web.settings import WebSettings

T = TypeVar("T")

dev_app = typer.Typer(help="Local trials (BROEN_ENV=dev only).", no_args_is_help=True)

DEMO_DIR = Path("var/demo")
# Synthetic organisation numbers (valid check digits, not real organisations), except NAV's own.
DEMO_ORGANISATIONS = [
    {"orgnr": "889640782", "name": "NAV Demo-kontor", "agency_type": "nav", "county": "Oslo"},
    {
        "orgnr": "310123455",
        "name": "Demo videregående skole",
        "agency_type": "skole",
        "county": "Oslo",
    },
    {
        "orgnr": "310123463",
        "name": "Demo fylkeskommune, OT",
        "agency_type": "fylkeskommune",
        "county": "Oslo",
    },
    {"orgnr": "310123471", "name": "Demo kommune", "agency_type": "kommune", "county": "Oslo"},
]
DEMO_CLIENTS = {
    "demo-nav": (
        "889640782",
        "participants:read participants:write events:write consents:read consents:write messages "
        "subscriptions",
    ),
    "demo-skole": (
        "310123455",
        "participants:read participants:write events:write consents:read consents:write messages "
        "subscriptions",
    ),
    "demo-ot": (
        "310123463",
        "participants:read participants:write events:write consents:read consents:write messages "
        "subscriptions",
    ),
}
# The people who work with the participants: (key, orgnr, unit key, name, roles).
DEMO_UNITS = {
    "nav-kontor": ("889640782", "NAV Grünerløkka", "nav_kontor"),
    "skole": ("310123455", "Demo videregående skole", "skole"),
    "ot": ("310123463", "Oppfølgingstjenesten Oslo", "ot"),
}
DEMO_STAFF = [
    ("vera", "889640782", "nav-kontor", "Vera Veileder", ["veileder"]),
    (
        "kim",
        "889640782",
        "nav-kontor",
        "Kim Koordinator",
        ["opplaeringskoordinator", "kontaktperson"],
    ),
    ("tone", "310123455", "skole", "Tone Lærer", ["kontaktlaerer", "faglaerer"]),
    ("omar", "310123463", "ot", "Omar OT", ["ot_radgiver"]),
]
# Synthetic people: birth dates in 2005-2007, individual numbers 500-999 (born 2000-2039),
# with the organisations that registered them.
DEMO_PARTICIPANTS = [
    ("Kari Nordmann", "150805512", ["310123455", "889640782"]),
    ("Ola Nordmann", "020306534", ["889640782", "310123455"]),
    ("Aisha Demo", "300707551", ["310123455"]),
]
# Who is assigned to whom: (participant, role, staff key or unit key).
DEMO_ASSIGNMENTS = [
    ("Kari Nordmann", "veileder", "vera"),
    ("Kari Nordmann", "kontaktlaerer", "tone"),
    ("Ola Nordmann", "veileder", "nav-kontor"),  # nobody yet: the office's inbox
    ("Ola Nordmann", "kontaktlaerer", "tone"),
    ("Aisha Demo", "kontaktlaerer", "tone"),
]
# Programme places: (participant, orgnr, programme).
DEMO_PROGRAMMES = [
    ("Kari Nordmann", "310123455", "vgo"),
    ("Ola Nordmann", "889640782", "opplaeringstiltak-lengre-varighet"),
]


def synthetic_national_id(first_nine: str) -> str:
    first = fodselsnummer.calc_check_digit1(first_nine)
    return first_nine + first + fodselsnummer.calc_check_digit2(first_nine + first)


def demo_key_path(client_id: str) -> Path:
    return DEMO_DIR / f"{client_id}.private.jwk.json"


def database_is_empty() -> bool:
    async def no_organisations(session: AsyncSession) -> bool:
        return not await participant_store.list_organisations(session)

    return in_directory(no_organisations)


async def _seed_people(session: AsyncSession) -> dict[str, Any]:
    """Units, staff, participants (registered by their organisations), assignments and
    programme places: enough to try messaging and the policy on."""
    keyring = Keyring.load(settings_for("participant").keys_dir, "participant")
    organisations = {
        o["orgnr"]: await participant_store.get_organisation(session, o["orgnr"])
        for o in DEMO_ORGANISATIONS
    }
    units = {}
    for key, (orgnr, name, kind) in DEMO_UNITS.items():
        units[key] = await participant_directory.add_unit(
            session, UnitCreate(orgnr=orgnr, name=name, kind=kind)
        )
    staff = {}
    for key, orgnr, unit_key, name, roles in DEMO_STAFF:
        staff[key] = await participant_directory.add_staff(
            session,
            StaffCreate.model_validate(
                {"orgnr": orgnr, "unit_id": units[unit_key].id, "name": name, "roles": roles}
            ),
        )
    participants = {}
    for name, first_nine, orgnrs in DEMO_PARTICIPANTS:
        for orgnr in orgnrs:
            organisation = organisations[orgnr]
            assert organisation is not None
            caller = CallerContext(kind="system", orgnr=orgnr, agency_type=organisation.agency_type)
            view, _ = await participant_service.register(
                session,
                keyring,
                caller,
                ParticipantCreate(
                    national_id=synthetic_national_id(first_nine),
                    name=name,
                    source_system="broen dev seed",
                    verification="verified",
                ),
            )
            participants[name] = view.read.id
    for name, role, assignee in DEMO_ASSIGNMENTS:
        by_staff = assignee in staff
        orgnr = staff[assignee].orgnr if by_staff else units[assignee].orgnr
        organisation = organisations[orgnr]
        assert organisation is not None
        await assignments.assign(
            session,
            organisation,
            participants[name],
            AssignmentCreate.model_validate(
                {
                    "role": role,
                    "staff_id": staff[assignee].id if by_staff else None,
                    "unit_id": None if by_staff else units[assignee].id,
                }
            ),
        )
    for name, orgnr, programme in DEMO_PROGRAMMES:
        organisation = organisations[orgnr]
        assert organisation is not None
        await assignments.add_programme(
            session,
            CallerContext(kind="system", orgnr=orgnr, agency_type=organisation.agency_type),
            participants[name],
            ProgrammeCreate(programme=programme, starts_on=date.today()),
        )
    return {
        "units": {key: str(unit.id) for key, unit in units.items()},
        "staff": {s.name: str(s.id) for s in staff.values()},
        "participants": {name: str(pid) for name, pid in participants.items()},
    }


def seed_demo_world() -> dict[str, Any]:
    """Organisations, API clients with keys under var/demo/, and a few synthetic participants."""
    for org in DEMO_ORGANISATIONS:
        asyncio.run(add_organisation(OrganisationCreate(**org)))
    clients = []
    for client_id, (orgnr, scopes) in DEMO_CLIENTS.items():
        key = OKPKey.generate_key("Ed25519", parameters={"kid": f"{client_id}-1"})
        path = demo_key_path(client_id)
        if path.exists():
            path.unlink()
        write_secret_json(path, key.as_dict(private=True))
        agency_type = next(o["agency_type"] for o in DEMO_ORGANISATIONS if o["orgnr"] == orgnr)
        asyncio.run(
            register_client(
                GatewaySettings(),
                client_id=client_id,
                orgnr=orgnr,
                agency_type=agency_type,
                scopes=scopes.split(),
                jwks={"keys": [key.as_dict(private=False)]},
            )
        )
        clients.append({"client_id": client_id, "orgnr": orgnr, "private_key": str(path)})
    people = in_directory(_seed_people)
    consents = asyncio.run(
        _seed_consents([uuid.UUID(people["participants"][name]) for name in MESSAGING_CONSENTS])
    )
    return {
        "organisations": len(DEMO_ORGANISATIONS),
        "clients": clients,
        **people,
        "consents": consents,
    }


# Whose paper consents the demo holds: NAV and the school may exchange messages about them.
MESSAGING_CONSENTS = ("Kari Nordmann", "Ola Nordmann")


async def _seed_consents(participant_ids: list[uuid.UUID]) -> list[str]:
    """Consents on paper, each recorded by the organisation that discloses under it: NAV may
    tell the school how to reach the participant and who follows them up, and write to the
    school about them; the school may write to NAV. The first participant's kontaktlærer then
    sees her NAV veileder, and can message "the veileder" of either."""
    settings = settings_for("consent")
    engine = make_engine(settings.database_url)
    keyring = Keyring.load(settings.keys_dir, "consent")
    notice = Notice(
        version="demo-samtykke-1",
        hash="sha256:" + hashlib.sha256(b"demo-samtykke-1").hexdigest(),
        language="nb",
    )
    recorded = []
    try:
        async with make_sessionmaker(engine).begin() as session:
            for participant_id in participant_ids:
                for discloser, recipient, categories in (
                    ("nav", "skole", ["contact", "nav.followup", "messages"]),
                    ("skole", "nav", ["messages"]),
                ):
                    orgnr = "889640782" if discloser == "nav" else "310123455"
                    by = CallerContext(kind="system", orgnr=orgnr, agency_type=discloser)
                    consent = RecordedConsent(
                        participant_id=participant_id,
                        disclosers=[discloser],
                        recipients=[recipient],
                        purposes=["oppfolging"],
                        categories=categories,
                        collection_method="paper",
                        evidence="Demo: signert samtykkeskjema",
                        notice=notice,
                    )
                    made = await consent_service.record(session, keyring, by, consent)
                    recorded.append(str(made.id))
    finally:
        await engine.dispose()
    return recorded


def demo_staff_table() -> str:
    """The staff in the directory, for `broen dev token --staff ID`."""

    async def listed(session: AsyncSession) -> list[str]:
        return [
            f"  {staff.id}  {staff.name} ({', '.join(staff.roles)}), {unit.name}"
            for staff, unit in await participant_store.list_staff(session)
        ]

    return "\n".join(in_directory(listed))


@dev_app.command("seed")
def seed(as_json: bool = JsonOption) -> None:
    """Seed the demo world if the databases are empty."""
    require_dev_mode()
    if not database_is_empty():
        emit(as_json, {"seeded": False}, "the databases already hold data; nothing seeded")
        return
    result = seed_demo_world()
    emit(as_json, {"seeded": True, **result}, f"seeded the demo world: {json.dumps(result)}")


def _demo_assertion(client_id: str) -> str:
    path = demo_key_path(client_id)
    if not path.exists():
        fail(f"no demo key for {client_id} under {DEMO_DIR}; run `broen dev seed` first")
    key = OKPKey.import_key(json.loads(path.read_text()))
    issuer = GatewaySettings().issuer
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": issuer,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode({"alg": "Ed25519", "kid": key.kid}, claims, key, algorithms=["Ed25519"])


ClientOption = typer.Option(..., "--client-id", help="demo-nav, demo-skole or demo-ot.")


@dev_app.command("assertion")
def assertion(client_id: str = ClientOption, as_json: bool = JsonOption) -> None:
    """Print a signed client assertion (private_key_jwt) of a demo client, for /oauth/token."""
    require_dev_mode()
    signed = _demo_assertion(client_id)
    emit(as_json, {"client_assertion": signed}, signed)


CLIENT_SCOPE = "participants:read participants:write"
STAFF_SCOPE = "participants:read participants:write messages consents:read"
# Tokens minted here name no registered client; this id says where they came from.
DEV_CLIENT_ID = "broen-dev"


@dev_app.command("token")
def token(
    client_id: str | None = typer.Option(
        None, "--client-id", help="A demo client (demo-nav, demo-skole, demo-ot): the real flow."
    ),
    staff: str | None = typer.Option(
        None, "--staff", help="A staff member's id: a token acting for them, minted locally."
    ),
    citizen: str | None = typer.Option(
        None, "--citizen", help="A participant's id: a citizen token, minted locally."
    ),
    national_id: str | None = typer.Option(
        None,
        "--national-id",
        help="A citizen by national id, as an identity provider would vouch for them: the "
        "participant with it, or (with --for) a guardian acting for a ward.",
    ),
    acting_for: str | None = typer.Option(
        None, "--for", help="With --national-id: the ward's participant id (a guardian)."
    ),
    scope: str | None = typer.Option(
        None,
        "--scope",
        help=f'Default "{CLIENT_SCOPE}" (--client-id) or "{STAFF_SCOPE}" (--staff).',
    ),
    as_json: bool = JsonOption,
) -> None:
    """Print an access token: a demo client's from the running gateway, or one minted with
    the gateway's token-signing key for a staff member or a participant."""
    require_dev_mode()
    if sum(option is not None for option in (client_id, staff, citizen, national_id)) != 1:
        fail("give exactly one of --client-id, --staff, --citizen or --national-id")
    if acting_for is not None and national_id is None:
        fail("--for goes with --national-id")
    if client_id is not None:
        issued = _client_token(client_id, scope or CLIENT_SCOPE)
    elif staff is not None:
        issued = _staff_token(_uuid_option("--staff", staff), _scopes(scope or STAFF_SCOPE))
    else:
        if scope is not None:
            fail("--scope does not apply to citizens: citizen tokens carry no scope")
        if national_id is not None:
            ward = _uuid_option("--for", acting_for) if acting_for is not None else None
            issued = _identified_citizen_token(national_id, ward)
        else:
            issued = _citizen_token(_uuid_option("--citizen", citizen or ""))
    emit(as_json, issued, issued["access_token"])


def _client_token(client_id: str, scope: str) -> dict[str, Any]:
    """The client_credentials flow against the running gateway."""
    issuer = GatewaySettings().issuer
    try:
        response = httpx.post(
            f"{issuer}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": _demo_assertion(client_id),
            },
            timeout=5,
        )
    except httpx.HTTPError:
        fail(f"the gateway at {issuer} is not answering; is `make run` running?")
    if response.status_code != 200:
        fail(f"the gateway refused: {response.text}")
    issued: dict[str, Any] = response.json()
    return issued


def _uuid_option(name: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{name} takes an id (a UUID)")


def _scopes(scope: str) -> list[str]:
    listed = scope.split()
    unknown = sorted(set(listed) - set(ORGANISATION_SCOPES))
    if unknown or not listed:
        fail(f"--scope takes some of: {' '.join(ORGANISATION_SCOPES)}")
    return list(dict.fromkeys(listed))


def _local_tokens() -> AccessTokens:
    """The gateway's own token signer, for minting without a client. Like the rest of dev
    mode it refuses unless the databases are the embedded SQLite ones."""
    try:
        for component in ("gateway", "participant"):
            ensure_dev_mode_is_safe(settings_for(component))
        return AuthRuntime.load(GatewaySettings()).tokens
    except ConfigurationError as error:
        fail(str(error))


def _from_directory(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        return in_directory(work)
    except (SQLAlchemyError, OSError) as error:
        # The driver's message may quote connection details; the type is enough to act on.
        fail(f"could not read the participant database ({type(error).__name__}); is it migrated?")


def _staff_token(staff_id: uuid.UUID, scopes: list[str]) -> dict[str, Any]:
    tokens = _local_tokens()

    async def read(session: AsyncSession) -> tuple[StaffRead, str]:
        try:
            staff = await participant_directory.read_staff(session, staff_id)
        except StaffNotFound:
            raise StaffNotFound(f"no staff member {staff_id} is in the directory") from None
        organisation = await participant_store.get_organisation(session, staff.orgnr)
        if organisation is None:
            raise OrganisationNotFound(f"the staff member's organisation {staff.orgnr} is gone")
        return staff, organisation.agency_type

    staff, agency_type = _from_directory(read)
    return tokens.issue_staff_token(
        client_id=DEV_CLIENT_ID, agency_type=agency_type, staff=staff, scopes=scopes
    )


def _identified_citizen_token(national_id: str, ward: uuid.UUID | None) -> dict[str, Any]:
    """A citizen token for the person with this national id, mapped through the blind
    index as the gateway will map an identity provider's national-id claim."""
    tokens = _local_tokens()
    try:
        number = fodselsnummer.validate(national_id)
    except Exception:
        fail("--national-id is not a valid fødselsnummer or D-nummer")
    keyring = Keyring.load(settings_for("participant").keys_dir, "participant")

    async def identify(session: AsyncSession) -> CitizenIdentity:
        return await participant_guardians.identify(session, keyring, number)

    identity = _from_directory(identify)
    if ward is None:
        if identity.participant_id is None:
            fail("no participant has that national id")
        return tokens.issue_citizen_token(participant_id=identity.participant_id)
    if ward not in identity.wards:
        fail(f"that person is not a current guardian of {ward}")
    return tokens.issue_citizen_token(
        participant_id=ward, acting_as="guardian", guardian=identity.pseudonym
    )


def _citizen_token(participant_id: uuid.UUID) -> dict[str, Any]:
    tokens = _local_tokens()

    async def exists(session: AsyncSession) -> bool:
        # A participant whose data key is gone is shredded: no one to act for.
        return await participant_store.get_wrapped_key(session, participant_id) is not None

    if not _from_directory(exists):
        fail(f"no participant {participant_id} is in the participant database")
    return tokens.issue_citizen_token(participant_id=participant_id)


# The web app (web/) in dev mode: a registered client at each demo organisation, one for
# citizens, and the demo identity provider standing in for ID-porten.
WEB_CLIENT_SCOPES = "participants:read messages consents:read consents:write"
WEB_CITIZEN_CLIENT = "broen-web-innbygger"
WEB_CITIZEN_CLIENT_ORGNR = "310123463"  # the county runs the citizens' pages in the demo


def prepare_web(keys_dir: Path) -> dict[str, str]:
    """The web app's keys and clients, the demo identity provider, and who the demo sign-in
    offers (idempotent: a world seeded before the web app existed gets them too). Returns
    the environment the web app and the gateway start with."""
    init_web_keys(keys_dir)
    demo.init_demo_idp()
    jwks = client_public_jwks(keys_dir)
    agency_types = {o["orgnr"]: o["agency_type"] for o in DEMO_ORGANISATIONS}
    staff_clients = {orgnr: f"broen-web-{orgnr}" for orgnr in agency_types}
    for orgnr, client_id in [
        *staff_clients.items(),
        (WEB_CITIZEN_CLIENT_ORGNR, WEB_CITIZEN_CLIENT),
    ]:
        with contextlib.suppress(ClientAlreadyRegistered):
            asyncio.run(
                register_client(
                    GatewaySettings(),
                    client_id=client_id,
                    orgnr=orgnr,
                    agency_type=agency_types[orgnr],
                    scopes=WEB_CLIENT_SCOPES,
                    jwks=jwks,
                )
            )
    _write_demo_people(WebSettings().demo_people_file)
    return {
        "BROEN_WEB_STAFF_CLIENTS": json.dumps(staff_clients),
        "BROEN_WEB_CITIZEN_CLIENT": WEB_CITIZEN_CLIENT,
        "BROEN_GATEWAY_CITIZEN_ISSUERS": json.dumps(demo.gateway_trust(WebSettings().public_url)),
    }


def _write_demo_people(path: Path) -> None:
    async def listed(session: AsyncSession) -> list[dict[str, Any]]:
        return [
            {
                "id": str(staff.id),
                "name": staff.name,
                "orgnr": staff.orgnr,
                "roles": list(staff.roles),
                "unit": unit.name,
            }
            for staff, unit in await participant_store.list_staff(session)
        ]

    people = {
        "staff": in_directory(listed),
        "participants": [
            {
                "key": name.split()[0].lower(),
                "name": name,
                "national_id": synthetic_national_id(first_nine),
            }
            for name, first_nine, _ in DEMO_PARTICIPANTS
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    write_secret_json(path, people)
