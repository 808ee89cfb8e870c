"""Retention: how long a participant's data is kept after their follow-up ended.

The data controller sets a number of years per programme, and a default for participants
in programmes without a rule of their own (or in none). A participant is due for deletion
when nobody follows them up any more (no place planned or active, no assignment current)
and the last trace of their follow-up is more than the years of the longest rule among
their programmes ago. Without a rule that covers all of their programmes nobody is deleted:
deleting personal data for good is a decision the controller makes, never a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from services.participant.store import FollowUp

DEFAULT_RULE = "default"

Outcome = Literal["due", "open", "within_retention", "no_rule"]


@dataclass(frozen=True)
class RetentionPolicy:
    default_years: int | None
    years_by_programme: Mapping[str, int]

    @property
    def configured(self) -> bool:
        return self.default_years is not None or bool(self.years_by_programme)

    def rule_for(self, programmes: frozenset[str]) -> tuple[str, int] | None:
        """The rule that decides for someone in these programmes: the longest one that
        applies (a programme without its own rule takes the default); None if any of
        them has no rule at all."""
        rules: list[tuple[int, str]] = []
        each: list[str | None] = [*sorted(programmes)] or [None]
        for programme in each:
            if programme is not None and programme in self.years_by_programme:
                rules.append((self.years_by_programme[programme], programme))
            elif self.default_years is not None:
                rules.append((self.default_years, DEFAULT_RULE))
            else:
                return None
        years, name = max(rules, key=lambda rule: (rule[0], rule[1] != DEFAULT_RULE))
        return name, years


@dataclass(frozen=True)
class Decision:
    follow_up: FollowUp
    outcome: Outcome
    # "retention:<programme or default>:<years>y": the rule that decided, where one did.
    rule: str | None = None


def years_after(day: date, years: int) -> date:
    """The same day `years` later (28 February for a 29 February that has none)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def decide(follow_up: FollowUp, policy: RetentionPolicy, today: date) -> Decision:
    if follow_up.open:
        return Decision(follow_up, "open")
    found = policy.rule_for(follow_up.programmes)
    if found is None:
        return Decision(follow_up, "no_rule")
    name, years = found
    rule = f"retention:{name}:{years}y"
    if today > years_after(follow_up.last_activity, years):
        return Decision(follow_up, "due", rule)
    return Decision(follow_up, "within_retention", rule)
