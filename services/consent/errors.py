from __future__ import annotations

from shared.problems import Conflict, NotFound


class ConsentNotFound(NotFound):
    type = "consent-not-found"
    title = "Consent not found"

    def __init__(self) -> None:
        # One wording for "unknown" and "not yours to see": no existence oracle.
        super().__init__("No consent you may see matches the request.")


class ConsentRequestNotFound(NotFound):
    type = "consent-request-not-found"
    title = "Consent request not found"

    def __init__(self) -> None:
        super().__init__("No consent request you may see matches the request.")


class RequestAlreadyAnswered(Conflict):
    type = "consent-request-answered"
    title = "Consent request already answered"

    def __init__(self, status: str) -> None:
        # Not `status`: that member of a problem document is the HTTP status.
        super().__init__(f"The request was already answered: {status}.", answer=status)
