"""Loading the policy document: the shipped one, a deployment's own, and invalid ones."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import (
    SHIPPED_POLICY,
    Grants,
    LegalBasis,
    decide_participant,
    load_policy,
    project_records,
)
from gateway.policy.document import parse_policy
from gateway.settings import GatewaySettings
from services.participant.schemas import AssignmentRead
from shared.settings import ConfigurationError

from .factories import COUNTY_ORG, NOW, SCHOOL_ORG, context, participant, staff


def shipped() -> dict[str, Any]:
    return tomllib.loads(SHIPPED_POLICY.read_text(encoding="utf-8"))


def test_the_shipped_policy_follows_the_domain_table() -> None:
    policy = load_policy()
    assert policy.version == "2025.1"
    assert policy.never == {"identity.national_id", "health.diagnosis"}
    assert ("nav", "skole", "identity.national_id") not in policy.flows
    benefits = policy.flows[("nav", "skole", "nav.benefits")]
    assert benefits[0].kind == "never"
    assert all(rule.kind != "legal" for rules in policy.flows.values() for rule in rules)
    assert {f.id for f in policy.document.flows if f.basis.startswith("legal:")} == {
        "ot-risk",
        "nav-school-followup",
    }


def test_enabling_a_legal_basis_in_another_file_changes_the_decisions(tmp_path: Path) -> None:
    text = SHIPPED_POLICY.read_text(encoding="utf-8").replace(
        'basis = "legal:opplaeringslova-ot"\nenabled = false',
        'basis = "legal:opplaeringslova-ot"\nenabled = true',
    )
    text = text.replace('version = "2025.1"', 'version = "oslo-2025.2"')
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    default, enabled = load_policy(), load_policy(path)

    # An OT adviser and a school's record of enrolment (as an assignment's role, here the
    # kontaktlaerer assignment the school made).
    person = participant({"name": SCHOOL_ORG})
    adviser = staff(COUNTY_ORG, "ot_radgiver")
    in_force = Grants(legal_bases=(LegalBasis("opplaeringslova-ot", NOW - timedelta(days=1)),))
    ctx = context(adviser, person, grants=in_force)
    assert decide_participant(default, ctx, person).released == ()

    record = AssignmentRead.model_validate(
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "participant_id": str(person.id),
            "orgnr": SCHOOL_ORG,
            "role": "kontaktlaerer",
            "staff_id": None,
            "unit_id": "00000000-0000-0000-0000-000000000002",
            "valid_from": NOW.isoformat(),
            "valid_to": None,
            "recorded_at": NOW.isoformat(),
        }
    )
    agencies = {SCHOOL_ORG: "skole"}
    assert project_records(default, ctx, [record], agency_types=agencies) == []
    [seen] = project_records(enabled, ctx, [record], agency_types=agencies)
    assert seen.decision.policy_version == "oslo-2025.2"
    assert {d.basis for d in seen.decision.fields} == {"legal:opplaeringslova-ot"}
    assert {d.rule for d in seen.decision.fields} == {"flow.ot-risk"}

    # Enabled in the policy, but not in force in the registry: nothing crosses.
    lapsed = Grants(legal_bases=(LegalBasis("opplaeringslova-ot", NOW - timedelta(days=9), NOW),))
    lapsed_ctx = context(adviser, person, grants=lapsed)
    assert project_records(enabled, lapsed_ctx, [record], agency_types=agencies) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["categories"].update({"gossip": {"description": "x"}}), "categories.gossip"),
        (lambda d: d["roles"]["veileder"].update(purposes=["spying"]), "roles.veileder"),
        (
            lambda d: d["resources"]["participant"]["fields"].update(shoe_size="contact"),
            "shoe_size",
        ),
        (lambda d: d["flows"].append({**d["flows"][1]}), "used twice"),
        (
            lambda d: d["flows"][1]["categories"].append("health.diagnosis"),
            "lets a `never` category cross",
        ),
        (lambda d: d["flows"][0].update(basis="maybe"), "flows.0.basis"),
        (lambda d: d.pop("version"), "version: Field required"),
        (lambda d: d["minors"]["grantors"].update(under_16=["neighbour"]), "minors.grantors"),
    ],
)
def test_an_invalid_policy_is_refused_with_a_clear_message(change: Any, expected: str) -> None:
    document = shipped()
    change(document)
    with pytest.raises(ConfigurationError) as refused:
        parse_policy(document, "deploy/policy.toml")
    message = str(refused.value)
    assert message.startswith("the personvern policy deploy/policy.toml is not valid:")
    assert expected in message


def test_a_missing_or_malformed_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the personvern policy"):
        load_policy(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("version = [", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"broken.toml is not valid TOML"):
        load_policy(broken)


def test_the_gateway_settings_point_at_the_shipped_policy() -> None:
    assert GatewaySettings().policy_path == SHIPPED_POLICY
