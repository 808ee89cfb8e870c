"""Typed clients for the services behind the gateway, on `shared.clients.Upstream`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

import httpx
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from gateway.policy.consents import Consent, ConsentUnavailable, Grants, LegalBasis
from services.consent.schemas import Grant, GrantsAnswer, GrantsQuery
from services.participant.schemas import (
    CitizenIdentity,
    CitizenLookup,
    EventFacts,
    EventFactsQuery,
    OrganisationRead,
    ParticipantRead,
    ProgrammeStatistics,
    RouteAnswer,
    RouteQuery,
    StaffRead,
    StatisticsQuery,
)
from shared.clients import Upstream, UpstreamProblem
from shared.internal_auth import CallerContext
from shared.problems import Problem

RELATIONSHIP_HEADER = "Broen-Caller-Relationship"
M = TypeVar("M", bound=BaseModel)


# The gateway's own identity when it asks a service for itself (not for a caller).
GATEWAY_ITSELF = CallerContext(kind="service", client_id="gateway")


@dataclass(frozen=True)
class ParticipantAnswer:
    participant: ParticipantRead
    status: int
    etag: str | None
    relationships: frozenset[str]


class ParticipantClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def register(self, caller: CallerContext, body: bytes) -> ParticipantAnswer:
        return _answer(
            await self.upstream.call("POST", "/api/v1/participants", caller, content=body)
        )

    async def lookup(self, caller: CallerContext, body: bytes) -> ParticipantAnswer:
        response = await self.upstream.call(
            "POST", "/api/v1/participants/lookup", caller, content=body
        )
        return _answer(response)

    async def read(self, caller: CallerContext, participant_id: uuid.UUID) -> ParticipantAnswer:
        response = await self.upstream.call("GET", f"/api/v1/participants/{participant_id}", caller)
        return _answer(response)

    async def fetch(
        self,
        model: type[M],
        method: str,
        path: str,
        caller: CallerContext,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout_seconds: float | None = None,
    ) -> tuple[M, int]:
        """A participant sub-resource parsed into its model, and the upstream status."""
        return await self.upstream.fetch(
            model,
            method,
            path,
            caller,
            content=content,
            params=params,
            headers=headers,
            read_timeout_seconds=read_timeout_seconds,
        )

    async def route(
        self, caller: CallerContext, participant_id: uuid.UUID, query: RouteQuery
    ) -> RouteAnswer:
        """Who a message the caller sends about the participant reaches now, with the
        facts its decision needs (the caller's relationships, the participant's flags)."""
        answer, _ = await self.upstream.fetch(
            RouteAnswer,
            "POST",
            f"/api/v1/participants/{participant_id}/route",
            caller,
            content=query.model_dump_json().encode(),
        )
        return answer

    async def event_facts(self, caller: CallerContext, query: EventFactsQuery) -> EventFacts:
        """What a page of domain events is projected for `caller` with."""
        answer, _ = await self.upstream.fetch(
            EventFacts,
            "POST",
            "/internal/v1/event-facts",
            caller,
            content=query.model_dump_json().encode(),
        )
        return answer

    async def read_organisation(self, caller: CallerContext, orgnr: str) -> OrganisationRead | None:
        """An organisation of the directory, or None if there is none."""
        try:
            response = await self.upstream.call("GET", f"/api/v1/organisations/{orgnr}", caller)
        except UpstreamProblem as problem:
            if problem.status == 404:
                return None
            raise
        return OrganisationRead.model_validate_json(response.content)

    async def programme_statistics(
        self, caller: CallerContext, query: StatisticsQuery
    ) -> ProgrammeStatistics:
        """The statistics of the caller's organisation's programme places, already
        suppressed by the service: no small count reaches the gateway."""
        answer, _ = await self.upstream.fetch(
            ProgrammeStatistics,
            "GET",
            "/internal/v1/statistics/programmes",
            caller,
            params=query.model_dump(mode="json", by_alias=True),
        )
        return answer

    async def identify(self, national_id: str) -> CitizenIdentity:
        """Who a citizen with this national id is to Broen (the number goes in the body)."""
        body = CitizenLookup(national_id=national_id).model_dump_json().encode()
        identity, _ = await self.upstream.fetch(
            CitizenIdentity, "POST", "/internal/v1/citizens/identify", GATEWAY_ITSELF, content=body
        )
        return identity

    async def read_staff(self, caller: CallerContext, staff_id: uuid.UUID) -> StaffRead | None:
        """The directory's record of a staff member, or None if there is none."""
        try:
            response = await self.upstream.call("GET", f"/internal/v1/staff/{staff_id}", caller)
        except UpstreamProblem as problem:
            if problem.status == 404:
                return None
            raise
        return StaffRead.model_validate_json(response.content)

    async def update(
        self, caller: CallerContext, participant_id: uuid.UUID, body: bytes, if_match: str | None
    ) -> ParticipantAnswer:
        response = await self.upstream.call(
            "PATCH",
            f"/api/v1/participants/{participant_id}",
            caller,
            content=body,
            headers={"If-Match": if_match} if if_match is not None else None,
        )
        return _answer(response)


def _answer(response: httpx.Response) -> ParticipantAnswer:
    return ParticipantAnswer(
        participant=ParticipantRead.model_validate_json(response.content),
        status=response.status_code,
        etag=response.headers.get("ETag"),
        relationships=frozenset(response.headers.get(RELATIONSHIP_HEADER, "").split()) - {"none"},
    )


class ConsentClient:
    """The consent service: the gateway's consent source, and its routes' upstream."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def grants_for(self, participant_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Grants]:
        """The consents not withdrawn and the legal bases, per participant, in one call; any
        failure is ConsentUnavailable, so the decision withholds (fail closed)."""
        body = GrantsQuery(participant_ids=list(participant_ids)).model_dump_json().encode()
        try:
            answer, _ = await self.upstream.fetch(
                GrantsAnswer, "POST", "/internal/v1/grants", GATEWAY_ITSELF, content=body
            )
        except (Problem, ValidationError) as error:
            raise ConsentUnavailable(type(error).__name__) from None
        bases = tuple(
            LegalBasis(ref=b.ref, valid_from=b.valid_from, valid_to=b.valid_to)
            for b in answer.legal_bases
        )
        return {
            participant_id: Grants(
                tuple(_consent(grant) for grant in answer.consents.get(participant_id, ())),
                bases,
            )
            for participant_id in participant_ids
        }


def _consent(grant: Grant) -> Consent:
    return Consent(
        id=str(grant.id),
        grantor=grant.grantor,
        disclosers=frozenset(grant.disclosers),
        recipients=frozenset(grant.recipients),
        categories=frozenset(grant.categories),
        purposes=frozenset(grant.purposes),
        valid_from=grant.valid_from,
        valid_to=grant.valid_to,
    )


async def participant_client(request: Request) -> ParticipantClient:
    client: ParticipantClient = request.app.state.participant_client
    return client


ParticipantsDep = Annotated[ParticipantClient, Depends(participant_client)]
