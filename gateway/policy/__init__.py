"""Personvern policy: the versioned document, the decision, and field projection.

policy = load_policy(settings.policy_path)            # at start; refuses an invalid file
purpose = require_purpose(policy, caller, header)      # 400 problem listing allowed ones
context = Context(caller, purpose, relationships, subject_of(participant), grants, now)
decision = decide_participant(policy, context, participant)
projected = project_participant(participant, decision)  # None: answer 404
"""

from gateway.policy.consents import (
    Consent,
    ConsentSource,
    ConsentUnavailable,
    GivenGrants,
    Grants,
    LegalBasis,
    read_grants,
)
from gateway.policy.decide import (
    PURPOSE_HEADER,
    Context,
    Decision,
    DecisionRequest,
    FieldDecision,
    Owner,
    PurposeNotAllowed,
    PurposeRequired,
    Subject,
    allowed_purposes,
    decide,
    decide_crossing,
    gate_reason,
    require_purpose,
)
from gateway.policy.document import SHIPPED_POLICY, Policy, load_policy, parse_policy
from gateway.policy.project import (
    ProjectedRecord,
    decide_events,
    decide_participant,
    decide_records,
    project_events,
    project_participant,
    project_records,
    subject_of,
    withheld_of,
)

__all__ = [
    "PURPOSE_HEADER",
    "SHIPPED_POLICY",
    "Consent",
    "ConsentSource",
    "ConsentUnavailable",
    "Context",
    "Decision",
    "DecisionRequest",
    "FieldDecision",
    "GivenGrants",
    "Grants",
    "LegalBasis",
    "Owner",
    "Policy",
    "ProjectedRecord",
    "PurposeNotAllowed",
    "PurposeRequired",
    "Subject",
    "allowed_purposes",
    "decide",
    "decide_crossing",
    "decide_events",
    "decide_participant",
    "decide_records",
    "gate_reason",
    "load_policy",
    "parse_policy",
    "project_events",
    "project_participant",
    "project_records",
    "read_grants",
    "require_purpose",
    "subject_of",
    "withheld_of",
]
