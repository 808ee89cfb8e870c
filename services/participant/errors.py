from __future__ import annotations

from shared.problems import Conflict, Forbidden, NotFound


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
