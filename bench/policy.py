"""Micro-benchmark of the personvern policy: decision plus projection of participant records.

Prints the median µs for one record and the ms for 1,000 records (each its own decision and
projection), measured in one run. Goals (issue 4): at most 50 µs and 20 ms. Figures, not
asserts. Run: `.venv/bin/python bench/policy.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/policy.py` puts bench/ first
    sys.path.insert(0, str(ROOT))

from gateway.policy import (  # noqa: E402
    Consent,
    Context,
    Grants,
    decide_participant,
    load_policy,
    project_participant,
    subject_of,
)
from services.participant.schemas import Address, ParticipantRead, Provenance  # noqa: E402
from shared.internal_auth import CallerContext  # noqa: E402

NOW = datetime(2025, 3, 1, tzinfo=UTC)
NAV, SCHOOL = "910000001", "910000002"


def record() -> ParticipantRead:
    owners = {"name": SCHOOL, "birth_date": SCHOOL, "phone": NAV, "email": NAV, "address": NAV}
    agency = {NAV: "nav", SCHOOL: "skole"}
    return ParticipantRead(
        id=uuid.uuid4(),
        name="Bench Person",
        birth_date=date(2001, 5, 17),
        phone="+47 99999999",
        email="bench@example.test",
        address=Address(street="Gate 1", postal_code="0150", city="Oslo"),
        provenance={
            f: Provenance(
                owner_orgnr=o,
                owner_agency_type=agency[o],  # type: ignore[arg-type]
                source_system="bench",
                verification="verified",
                recorded_at=NOW,
            )
            for f, o in owners.items()
        },
    )


def main() -> None:
    policy = load_policy()
    caller = CallerContext(
        kind="staff", orgnr=SCHOOL, agency_type="skole", roles=("kontaktlaerer",)
    )
    consent = Consent(
        id="c-1",
        grantor="participant",
        disclosers=frozenset({"nav"}),
        recipients=frozenset({"skole"}),
        categories=frozenset({"contact"}),
        purposes=frozenset({"oppfolging"}),
        valid_from=NOW - timedelta(days=1),
    )
    records = [record() for _ in range(1000)]
    contexts = [
        Context(
            caller, "oppfolging", frozenset({"assigned"}), subject_of(r), Grants((consent,)), NOW
        )
        for r in records
    ]

    def one(i: int) -> None:
        project_participant(records[i], decide_participant(policy, contexts[i], records[i]))

    for i in range(2000):  # warm-up
        one(i % 1000)
    singles = []
    for i in range(5000):
        start = time.perf_counter_ns()
        one(i % 1000)
        singles.append(time.perf_counter_ns() - start)
    batches = []
    for _ in range(20):
        start = time.perf_counter_ns()
        for i in range(1000):
            one(i)
        batches.append(time.perf_counter_ns() - start)

    print(f"policy {policy.version}: decision + projection of one participant record")
    print(f"  one record:    median {statistics.median(singles) / 1000:7.1f} µs  (goal <= 50 µs)")
    print(f"  1,000 records: median {statistics.median(batches) / 1e6:7.2f} ms  (goal <= 20 ms)")


if __name__ == "__main__":
    main()
