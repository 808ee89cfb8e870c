from __future__ import annotations

from shared.problems import Conflict, Forbidden, NotFound, ValidationProblem


class ParticipantNotFound(NotFound):
    type = "participant-not-found"
    title = "Participant not found"

    def __init__(self) -> None:
        # One wording for "unknown" and "not visible to you": no existence oracle.
        super().__init__("No participant you may see matches the request.")


class OrganisationNotFound(NotFound):
    type = "organisation-not-found"
    title = "Organisation not found"


class OrganisationExists(Conflict):
    type = "organisation-exists"
    title = "Organisation already registered"


class CallerOrganisationUnknown(Forbidden):
    type = "organisation-not-registered"
    title = "Organisation not registered"

    def __init__(self) -> None:
        super().__init__("The calling organisation is not registered in Broen.")


class UnitNotFound(NotFound):
    type = "unit-not-found"
    title = "Unit not found"


class StaffNotFound(NotFound):
    type = "staff-not-found"
    title = "Staff member not found"


class NotYourOrganisation(Forbidden):
    type = "not-your-organisation"
    title = "Not your organisation's"


class AssignmentConflict(Conflict):
    type = "assignment-conflict"
    title = "Assignment changed meanwhile"

    def __init__(self) -> None:
        super().__init__("Another assignment in this role was recorded at the same time; retry.")


class ProgrammeNotFound(NotFound):
    type = "programme-not-found"
    title = "Programme participation not found"


class UnknownEventType(ValidationProblem):
    type = "unknown-event-type"
    title = "Unknown event type"

    def __init__(self) -> None:
        super().__init__(
            "The event type is not in the catalogue; GET /api/v1/event-types lists them.",
            errors=[
                {
                    "field": "type",
                    "location": ["body", "type"],
                    "message": "not in the catalogue",
                    "code": "unknown_event_type",
                }
            ],
        )


class EventTypeNotOwned(Forbidden):
    type = "event-type-not-owned"
    title = "Event type not yours to record"

    def __init__(self) -> None:
        super().__init__("Your organisation's agency type may not record this event type.")


class IdempotencyKeyReused(Conflict):
    type = "idempotency-key-reused"
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key came with a different request before; use a new key."
        )


class EventConflict(Conflict):
    type = "event-conflict"
    title = "Event recorded meanwhile"

    def __init__(self) -> None:
        super().__init__("The event could not be recorded because of a concurrent change; retry.")


class UnknownUnit(ValidationProblem):
    type = "unknown-unit"
    title = "Unknown unit"

    def __init__(self) -> None:
        super().__init__(
            "No unit has this id or handle; an organisation's units and their inbox handles "
            "are listed at GET /api/v1/units.",
            errors=[{"field": "to", "message": "no such unit"}],
        )
