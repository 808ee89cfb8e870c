"""Micro-benchmark of the personvern policy: decision plus projection of participant records.

Prints the median µs for one record, the ms for 1,000 records (each its own decision and
projection), and the ms for 1,000 different participants through the batch path (a bulk
check: a few owner patterns, varied ages, some with consents of their own, a few with
adressebeskyttelse), measured in one run. The whole measurement is repeated BENCH_ROUNDS
times (3) for each figure's median and spread (min–max); the figures also go to
BENCH_RESULTS_DIR/policy.json (default var/bench/). Goals (issue 4): at most 50 µs and
20 ms. Figures, not asserts. Run: `.venv/bin/python bench/policy.py`.
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

from bench.common import Results, rounds_from_env, spread, spread_text  # noqa: E402
from gateway.policy import (  # noqa: E402
    Consent,
    Context,
    Grants,
    decide_participant,
    load_policy,
    project_participant,
    subject_of,
)
from gateway.policy.batch import decide_participants  # noqa: E402
from gateway.policy.consents import Grantor  # noqa: E402
from gateway.policy.decide import age_on  # noqa: E402
from services.participant.schemas import Address, ParticipantRead, Provenance  # noqa: E402
from shared.internal_auth import CallerContext  # noqa: E402

GOAL_ONE_US = 50.0
GOAL_THOUSAND_MS = 20.0

NOW = datetime(2025, 3, 1, tzinfo=UTC)
NAV, SCHOOL = "910000001", "910000002"
AGENCY = {NAV: "nav", SCHOOL: "skole"}
USUAL_OWNERS = {"name": SCHOOL, "birth_date": SCHOOL, "phone": NAV, "email": NAV, "address": NAV}
# Who holds what, for the batch's population: a few patterns, as in one school's roster.
OWNER_PATTERNS = [
    USUAL_OWNERS,
    {"name": SCHOOL, "birth_date": SCHOOL, "phone": SCHOOL, "email": SCHOOL},
    {"name": NAV, "birth_date": NAV, "phone": NAV, "address": NAV},
    {"name": SCHOOL, "birth_date": SCHOOL, "phone": SCHOOL, "email": NAV, "address": NAV},
]


def record(
    owners: dict[str, str] = USUAL_OWNERS,
    *,
    birth_date: date = date(2001, 5, 17),
    adressebeskyttelse: str | None = None,
) -> ParticipantRead:
    values = {
        "name": "Bench Person",
        "birth_date": birth_date,
        "phone": "+47 99999999",
        "email": "bench@example.test",
        "address": Address(street="Gate 1", postal_code="0150", city="Oslo"),
    }
    if adressebeskyttelse is not None:
        owners = {**owners, "adressebeskyttelse": NAV}
        values["adressebeskyttelse"] = adressebeskyttelse
    return ParticipantRead(
        id=uuid.uuid4(),
        **{f: v for f, v in values.items() if f in owners},
        provenance={
            f: Provenance(
                owner_orgnr=o,
                owner_agency_type=AGENCY[o],
                source_system="bench",
                verification="verified",
                recorded_at=NOW,
            )
            for f, o in owners.items()
        },
    )


def consent_of(participant: int, grantor: Grantor = "participant") -> Consent:
    return Consent(
        id=f"c-{participant}",
        grantor=grantor,
        disclosers=frozenset({"nav"}),
        recipients=frozenset({"skole"}),
        categories=frozenset({"contact"}),
        purposes=frozenset({"oppfolging"}),
        valid_from=NOW - timedelta(days=1),
    )


def population(caller: CallerContext) -> list[tuple[Context, ParticipantRead]]:
    """1,000 different participants aged 14 to 24: every fifth has a consent of its own
    (from a guardian when under 16), every fiftieth has adressebeskyttelse."""
    items = []
    for i in range(1000):
        birth_date = date(2001, 1, 1) + timedelta(days=(i * 37) % (10 * 365))
        person = record(
            OWNER_PATTERNS[i % len(OWNER_PATTERNS)],
            birth_date=birth_date,
            adressebeskyttelse="fortrolig" if i % 50 == 7 else None,
        )
        subject = subject_of(person)
        grantor: Grantor = "guardian" if age_on(birth_date, NOW.date()) < 16 else "participant"
        grants = Grants((consent_of(i, grantor),)) if i % 5 == 0 else Grants()
        items.append(
            (Context(caller, "oppfolging", frozenset({"assigned"}), subject, grants, NOW), person)
        )
    return items


def measure() -> dict[str, float]:
    """One round: the median µs for one record, ms for 1,000 one by one and for 1,000
    through the batch path, and how many distinct decisions the batch took."""
    policy = load_policy()
    caller = CallerContext(
        kind="staff", orgnr=SCHOOL, agency_type="skole", roles=("kontaktlaerer",)
    )
    consent = consent_of(1)
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

    bulk = population(caller)

    def batch() -> int:
        decisions = decide_participants(policy, bulk)
        for (_, person), decision in zip(bulk, decisions, strict=True):
            project_participant(person, decision)
        return len({id(d) for d in decisions})

    distinct = batch()  # warm-up
    batched = []
    for _ in range(20):
        start = time.perf_counter_ns()
        batch()
        batched.append(time.perf_counter_ns() - start)
    return {
        "one_us": statistics.median(singles) / 1000,
        "thousand_ms": statistics.median(batches) / 1e6,
        "batch_ms": statistics.median(batched) / 1e6,
        "distinct": distinct,
    }


def main() -> None:
    rounds = rounds_from_env(3)
    results = Results("policy", {"rounds": rounds, "records": 1000, "singles": 5000})
    policy = load_policy()
    found = []
    for round_no in range(1, rounds + 1):
        figures = measure()
        found.append(figures)
        print(
            f"round {round_no}: one record {figures['one_us']:.1f} µs, 1,000 records "
            f"{figures['thousand_ms']:.2f} ms, 1,000 batch path {figures['batch_ms']:.2f} ms"
        )

    def of(key: str) -> list[float]:
        return [f[key] for f in found]

    print(
        f"policy {policy.version}: decision + projection of one participant record, "
        f"median (min–max) of {rounds} round(s)"
    )
    print(f"  one record:        {spread_text(of('one_us'), 1)} µs  (goal <= {GOAL_ONE_US:g} µs)")
    print(
        f"  1,000 records:     {spread_text(of('thousand_ms'))} ms  "
        f"(goal <= {GOAL_THOUSAND_MS:g} ms)"
    )
    print(
        f"  1,000, batch path: {spread_text(of('batch_ms'))} ms  (goal <= "
        f"{GOAL_THOUSAND_MS:g} ms; 1,000 participants, {found[-1]['distinct']:.0f} distinct "
        "decisions)"
    )
    results.data.update(
        policy_version=str(policy.version),
        rounds=found,
        one_us=spread(of("one_us")),
        thousand_ms=spread(of("thousand_ms")),
        batch_ms=spread(of("batch_ms")),
        distinct_decisions=found[-1]["distinct"],
        goals={"one_us": GOAL_ONE_US, "thousand_ms": GOAL_THOUSAND_MS},
    )
    results.write()


if __name__ == "__main__":
    main()
