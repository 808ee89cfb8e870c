"""Locust users for bench/load.py: mixed traffic through the gateway.

Not run on its own: bench/load.py builds the world, writes what the users need (the
participants, the threads, fresh access tokens) to the JSON file named by
BENCH_LOAD_WORLD, and starts `locust -f bench/locustfile.py --headless ...`.

  * a kontaktlærer and a veileder (staff tokens): each reads participant cards
    (`GET /api/v1/participants/{id}` with Broen-Purpose), reads the inbox's first page
    (`GET /api/v1/threads`) and replies in a thread (`POST /api/v1/threads/{id}/messages`),
    with a think time between requests;
  * NAV's system (system token): pushes a batch of timeline events
    (`POST /api/v1/events:batch`) at a fixed pace, a fixed number of such users whatever
    the total.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant_pacing, task

WORLD: dict[str, Any] = json.loads(Path(os.environ["BENCH_LOAD_WORLD"]).read_text())
PARTICIPANTS: list[str] = WORLD["participants"]
THREADS: list[str] = WORLD["threads"]
BODY = "Hei! Vi følger opp fraværet denne uka. Kan vi ta en prat?"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {WORLD['tokens'][role]}"}


class Staff(FastHttpUser):
    """A staff member at work: cards, the inbox, now and then a reply."""

    abstract = True
    role = ""
    wait_time = between(WORLD["think_s"][0], WORLD["think_s"][1])

    def on_start(self) -> None:
        self.plain = bearer(self.role)
        self.reading = {**self.plain, "Broen-Purpose": WORLD["purpose"]}

    @task(WORLD["mix"]["card"])
    def read_card(self) -> None:
        self.client.get(
            f"/api/v1/participants/{random.choice(PARTICIPANTS)}",  # noqa: S311 - not crypto
            headers=self.reading,
            name=f"{self.role}: GET /participants/{{id}}",
        )

    @task(WORLD["mix"]["inbox"])
    def read_inbox(self) -> None:
        self.client.get(
            "/api/v1/threads", headers=self.plain, name=f"{self.role}: GET /threads (inbox)"
        )

    @task(WORLD["mix"]["reply"])
    def reply(self) -> None:
        self.client.post(
            f"/api/v1/threads/{random.choice(THREADS)}/messages",  # noqa: S311 - not crypto
            json={"body": BODY},
            headers=self.plain,
            name=f"{self.role}: POST /threads/{{id}}/messages",
        )


class Kontaktlaerer(Staff):
    role = "kontaktlaerer"


class Veileder(Staff):
    role = "veileder"


class NavSystem(FastHttpUser):
    """NAV's case system pushing what happened, a batch at a fixed pace."""

    fixed_count = WORLD["nav_users"]
    wait_time = constant_pacing(WORLD["nav_pacing_s"])

    def on_start(self) -> None:
        self.headers = {**bearer("nav"), "Broen-Purpose": WORLD["purpose"]}
        self.sent = 0

    @task
    def push_events(self) -> None:
        occurred = datetime.now(UTC).isoformat()
        items = []
        for _ in range(WORLD["batch"]):
            self.sent += 1
            items.append(
                {
                    "idempotency_key": f"load-{uuid.uuid4()}",
                    "participant_id": PARTICIPANTS[self.sent % len(PARTICIPANTS)],
                    "type": WORLD["event"]["type"],
                    "occurred_at": occurred,
                    "payload": WORLD["event"]["payload"],
                    "source_system": "Arena",
                }
            )
        with self.client.post(
            "/api/v1/events:batch",
            json={"items": items},
            headers=self.headers,
            name=f"nav: POST /events:batch ({WORLD['batch']} items)",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                answers = (response.json() or {}).get("items", [])
                refused = sum(1 for a in answers if a.get("status") != 201)
                if refused:  # a 200 names each refused item; count the batch as failed
                    response.failure(f"{refused} of {len(items)} items refused")
