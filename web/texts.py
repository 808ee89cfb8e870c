"""The words the pages use for the API's codes (bokmål). One place, so that a code the
API adds later shows as itself rather than breaking a page."""

from __future__ import annotations

from typing import Any

ROLES = {
    "kontaktlaerer": "Kontaktlærer",
    "faglaerer": "Faglærer",
    "veileder": "NAV-veileder",
    "kontaktperson": "Kontaktperson",
    "opplaeringskoordinator": "Opplæringskoordinator",
    "ot_radgiver": "Rådgiver i oppfølgingstjenesten",
    "auditor": "Revisor",
    "trial_lead": "Forsøksleder",
}
AGENCIES = {
    "nav": "NAV",
    "fylkeskommune": "Fylkeskommunen",
    "skole": "Skolen",
    "kommune": "Kommunen",
    "tiltaksarrangor": "Tiltaksarrangøren",
    "laerebedrift": "Lærebedriften",
    "helse": "Helsetjenesten",
}
# The agency as the object of a sentence ("... kan dele med skolen").
AGENCIES_IN_SENTENCE = {
    "nav": "NAV",
    "fylkeskommune": "fylkeskommunen",
    "skole": "skolen",
    "kommune": "kommunen",
    "tiltaksarrangor": "tiltaksarrangøren",
    "laerebedrift": "lærebedriften",
    "helse": "helsetjenesten",
}
PURPOSES = {
    "oppfolging": "oppfølging",
    "inntak": "inntak",
    "kontakt": "kontakt",
    "rapportering": "rapportering",
    "tilrettelegging": "tilrettelegging",
}
CATEGORIES = {
    "identity.basic": "Navn og fødselsdato",
    "contact": "Telefon og e-post",
    "address": "Adresse",
    "enrolment": "Skole, utdanningsprogram og hvem som følger deg opp der",
    "attendance": "Fravær",
    "progress": "Fremgang i opplæringen",
    "risk": "Signaler om fare for frafall",
    "nav.followup": "Oppfølging i NAV og hvem som er veilederen din",
    "nav.measure": "Tiltak i NAV",
    "nav.benefits": "Ytelser fra NAV",
    "health.adjustment": "Behov for tilrettelegging",
    "apprenticeship": "Lærekontrakt og lærebedrift",
    "messages": "Meldinger mellom dem som følger deg opp",
}
# The categories a staff member may ask a participant's consent for, on the request form.
REQUESTABLE_CATEGORIES = ("contact", "nav.followup", "attendance", "progress", "messages")
FIELDS = {
    "name": "Navn",
    "birth_date": "Fødselsdato",
    "phone": "Telefon",
    "email": "E-post",
    "address": "Adresse",
    "adressebeskyttelse": "Adressebeskyttelse",
    "skjermet": "Skjermet",
    "assignment.role": "Rolle",
    "assignment.staff_id": "Hvem som har rollen",
    "assignment.unit_id": "Enhet",
    "assignment.valid_from": "Fra",
    "assignment.valid_to": "Til",
    "programme.programme": "Program",
    "message.subject": "Emne i en melding",
    "message.body": "Teksten i en melding",
    "consents.all": "Samtykkene dine",
}
# Why a field is withheld, in plain words; `{purpose}` is the purpose of the read.
WITHHELD = {
    "no_consent": "mangler samtykke for formål {purpose}",
    "not_shared": "deles ikke med din virksomhet",
    "consent_unavailable": "samtykkeregisteret svarer ikke akkurat nå; prøv igjen om litt",
    "no_rule": "ingen regel tillater deling for formål {purpose}",
    "no_legal_basis": "mangler hjemmel for formål {purpose}",
    "purpose_not_allowed": "formål {purpose} er ikke tillatt for din rolle",
    "no_relationship": "du har ingen oppfølgingsrolle for deltakeren",
    "skjermet": "deltakeren er skjermet",
    "protected": "deltakeren har adressebeskyttelse",
    "never": "deles aldri",
    "no_value": "ikke registrert",
}
# How a field was released to a reader (the access log's `basis`).
BASES = {
    "own_organisation": "egen virksomhet",
    "relationship": "oppfølgingsrolle",
    "consent": "samtykke",
    "legal_basis": "hjemmel i lov",
    "self": "deg selv",
}
ACTING_AS = {
    "staff": "En ansatt",
    "system": "Et fagsystem",
    "participant": "Du",
    "guardian": "Foresatt",
    "operator": "Driftsansvarlig",
}
CONSENT_STATUS = {
    "active": "Gjelder",
    "withdrawn": "Trukket tilbake",
    "expired": "Utløpt",
    "pending": "Venter på svar",
    "accepted": "Godtatt",
    "declined": "Avslått",
}
# The API's problem types (the last part of `type`), as a person can act on them.
PROBLEMS = {
    "unauthorized": "Økten din er utløpt. Logg inn på nytt.",
    "forbidden": "Du har ikke tilgang til dette.",
    "not-found": "Fant ikke det du ba om. Det kan være slettet, eller du har ikke tilgang.",
    "no-recipient": "Det er ingen som har den rollen for deltakeren akkurat nå.",
    "no-basis-for-messages": (
        "Du kan ikke sende melding om deltakeren: det mangler samtykke eller hjemmel for "
        "meldinger mellom virksomhetene."
    ),
    "purpose-not-allowed": "Formålet er ikke tillatt for rollen din.",
    "rate-limited": "For mange forespørsler på kort tid. Vent litt og prøv igjen.",
    "service-unavailable": "Tjenesten svarer ikke akkurat nå. Prøv igjen om litt.",
    "database-unavailable": "Tjenesten svarer ikke akkurat nå. Prøv igjen om litt.",
    "audit-unavailable": "Tjenesten svarer ikke akkurat nå. Prøv igjen om litt.",
    "conflict": "Dette er allerede gjort, eller noen andre har endret det.",
}
BY_STATUS = {
    400: "Forespørselen kunne ikke behandles.",
    401: PROBLEMS["unauthorized"],
    403: PROBLEMS["forbidden"],
    404: PROBLEMS["not-found"],
    409: PROBLEMS["conflict"],
    422: "Noe i skjemaet er ikke riktig fylt ut.",
    429: PROBLEMS["rate-limited"],
}
UNAVAILABLE = PROBLEMS["service-unavailable"]
# Validation errors the message forms can get, by the pydantic error type.
INVALID = {
    "national_id_in_text": (
        "Teksten inneholder et fødselsnummer eller D-nummer. Ta det bort: samtalen viser "
        "allerede hvilken deltaker det gjelder."
    ),
    "string_too_short": "Feltet kan ikke være tomt.",
    "string_too_long": "Teksten er for lang.",
    "missing": "Feltet må fylles ut.",
}


def role(code: str | None) -> str:
    return ROLES.get(code or "", code or "")


def agency(code: str | None) -> str:
    return AGENCIES.get(code or "", code or "")


def agency_in_sentence(code: str | None) -> str:
    return AGENCIES_IN_SENTENCE.get(code or "", code or "")


def purpose(code: str | None) -> str:
    return PURPOSES.get(code or "", code or "")


def field(code: str) -> str:
    """A field of the participant record is named without its resource."""
    return FIELDS.get(code.removeprefix("participant."), code)


def category(code: str) -> str:
    return CATEGORIES.get(code, code)


def withheld(reason: str, purpose_code: str) -> str:
    template = WITHHELD.get(reason, "deles ikke")
    return template.format(purpose=purpose(purpose_code))


def basis(code: str) -> str:
    """`consent:<id>` and `legal_basis:<id>` name the consent or basis; the kind is enough."""
    kind = code.split(":", 1)[0]
    return BASES.get(kind, kind)


def problem(status: int, body: dict[str, Any] | None) -> str:
    """A readable sentence for an API problem: by its type, else by its status."""
    kind = str((body or {}).get("type", "")).rsplit("/", 1)[-1]
    if kind in PROBLEMS:
        return PROBLEMS[kind]
    if status >= 500:
        return UNAVAILABLE
    return BY_STATUS.get(status, BY_STATUS[400])


def invalid_fields(body: dict[str, Any] | None) -> dict[str, str]:
    """What is wrong with each field of a form, from a 422 problem's `errors`."""
    found: dict[str, str] = {}
    for error in (body or {}).get("errors", []) or []:
        if not isinstance(error, dict):
            continue
        name = str(error.get("field", "")).split(".", 1)[0]
        found.setdefault(name, INVALID.get(str(error.get("code")), BY_STATUS[422]))
    return found
