from __future__ import annotations

from shared.problems import Conflict, Forbidden, NotFound, ValidationProblem


class ThreadNotFound(NotFound):
    type = "thread-not-found"
    title = "Thread not found"

    def __init__(self) -> None:
        # One wording for "unknown" and "not yours" (or no longer yours, after a handover).
        super().__init__("No thread of yours has this id.")


class ThreadClosed(Conflict):
    type = "thread-closed"
    title = "Thread closed"

    def __init__(self) -> None:
        super().__init__("The thread is closed and takes no new messages; open a new thread.")


class MessageToYourself(ValidationProblem):
    type = "message-to-yourself"
    title = "You hold that role yourself"

    def __init__(self) -> None:
        super().__init__(
            "The addressee resolves to you: you hold that role for the participant.",
            errors=[{"field": "to", "message": "resolves to the sender"}],
        )


class NotAnOrganisation(Forbidden):
    type = "organisation-token-required"
    title = "An organisation's token is required"

    def __init__(self) -> None:
        super().__init__("Messages are sent and read by organisations' staff and systems.")
