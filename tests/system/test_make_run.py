"""`make run` end to end, and the refusals that keep dev mode off production set-ups.

The `make run` test copies the project (tracked and untracked-but-not-ignored files) into a
fresh directory, so it starts from an empty `var/`, links the existing `.venv` instead of
installing one, and runs the copy's code (PYTHONPATH points at the copy).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from broen_cli.dev import synthetic_national_id
from services.participant.settings import ParticipantSettings
from shared.settings import DevModeRefused, ensure_dev_mode_is_safe
from tests.otlp import Collector, exported_texts

ROOT = Path(__file__).resolve().parents[2]
BROEN = Path(sys.executable).parent / "broen"
PORTS = {"gateway": 8000, "participant": 8001, "consent": 8002, "messaging": 8003}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any BROEN_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROEN_")}
    env.update(extra)
    return env


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _descendants(root: int) -> set[int]:
    """Every live process below `root` (honcho starts its children in their own sessions)."""
    parent_of = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            parent_of[pid] = stat[1]
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parent_of.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


def _group_members(pgid: int) -> set[int]:
    members = set()
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] != "Z":
            members.add(pid)
    return members


def _copy_project(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=30,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not source.is_file() or name.startswith("var/"):
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)  # keeps mtimes: make sees the venv as up to date
    (target / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)


def _wait_until_healthy(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = dict(PORTS)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        for name, port in list(waiting.items()):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    del waiting[name]
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if waiting:
        pytest.fail(
            f"no healthy /healthz within {START_TIMEOUT_S:.0f} s from {sorted(waiting)}:\n"
            f"{log.read_text()[-4000:]}"
        )


def _walk_through_the_readme(workdir: Path, env: dict[str, str], printed: str) -> None:
    """The README's walkthrough against the running system, step by step."""

    def broen(*arguments: str) -> str:
        return subprocess.run(
            [str(workdir / ".venv" / "bin" / "broen"), *arguments],
            cwd=workdir, env={**env, "BROEN_ENV": "dev"}, capture_output=True, check=True,
            timeout=30,
        ).stdout.decode().strip()

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    gateway = "http://127.0.0.1:8000/api/v1"
    # 1-2: the demo school's system registers a participant, declaring its purpose.
    school = bearer(broen("dev", "token", "--client-id", "demo-skole"))
    registered = httpx.post(
        f"{gateway}/participants",
        json={"national_id": "01010750160", "name": "Demo Elev", "source_system": "curl"},
        headers={**school, "Broen-Purpose": "inntak"},
        timeout=10.0,
    )
    assert registered.status_code == 201, registered.text
    assert "name" not in registered.json()  # registering alone is no relationship
    participant = f"{gateway}/participants/{registered.json()['id']}"
    # 3: the teacher `make run` listed is assigned.
    teacher = next(line.split()[0] for line in printed.splitlines() if "Tone" in line)
    assigned = httpx.post(
        f"{participant}/assignments",
        json={"role": "kontaktlaerer", "staff_id": teacher},
        headers=school,
        timeout=10.0,
    )
    assert assigned.status_code == 201, assigned.text
    # 4: read back and looked up, for a purpose.
    following = {**school, "Broen-Purpose": "oppfolging"}
    read = httpx.get(participant, headers=following, timeout=10.0)
    assert read.status_code == 200 and read.json()["name"] == "Demo Elev", read.text
    found = httpx.post(
        f"{gateway}/participants/lookup",
        json={"national_id": "01010750160"},
        headers=following,
        timeout=10.0,
    )
    assert found.json()["id"] == registered.json()["id"]
    organisations = httpx.get(f"{gateway}/organisations", headers=school, timeout=10.0)
    assert {"310123455", "889640782"} <= {o["orgnr"] for o in organisations.json()["items"]}
    # 5: the teacher, acting for herself.
    as_teacher = httpx.get(
        participant,
        headers={
            **bearer(broen("dev", "token", "--staff", teacher)),
            "Broen-Purpose": "oppfolging",
        },
        timeout=10.0,
    )
    assert as_teacher.status_code == 200, as_teacher.text
    # 6: an absence recorded (once, though sent twice) and on the timeline.
    writer = bearer(
        broen(
            "dev",
            "token",
            "--client-id",
            "demo-skole",
            "--scope",
            "participants:read participants:write events:write",
        )
    )
    absence = {
        "type": "fravaer.registrert",
        "occurred_at": "2026-11-20T08:00:00+01:00",
        "payload": {
            "period_start": "2026-11-16",
            "period_end": "2026-11-20",
            "absence_percent": 12.5,
        },
        "source_system": "curl",
    }
    for _ in range(2):  # the retry returns the first result
        recorded = httpx.post(
            f"{participant}/events",
            json=absence,
            headers={**writer, "Idempotency-Key": "fravaer-uke-47"},
            timeout=10.0,
        )
        assert recorded.status_code == 201, recorded.text
    timeline = httpx.get(
        f"{participant}/timeline", headers={**writer, "Broen-Purpose": "oppfolging"}, timeout=10.0
    )
    assert [e["type"] for e in timeline.json()["items"]] == ["fravaer.registrert"]
    # 7: innsyn: the participant sees the reads above, and who made them.
    citizen = bearer(broen("dev", "token", "--citizen", registered.json()["id"]))
    log = httpx.get(f"{gateway}/me/access-log", headers=citizen, timeout=10.0)
    assert log.status_code == 200, log.text
    assert {item["organisation"]["orgnr"] for item in log.json()["items"]} == {"310123455"}
    assert len(log.json()["items"]) >= 5
    # 8: consent asked, accepted, receipted and withdrawn.
    asker = bearer(
        broen(
            "dev", "token", "--client-id", "demo-skole",
            "--scope", "participants:read consents:write",
        )
    )
    asked = httpx.post(
        f"{gateway}/consent-requests",
        json={
            "participant_id": registered.json()["id"],
            "disclosers": ["nav"], "recipients": ["skole"], "purposes": ["oppfolging"],
            "categories": ["contact", "nav.followup"],
            "justification": "Vi vil vite hvem veilederen din i NAV er.",
        },
        headers=asker, timeout=10.0,
    )
    assert asked.status_code == 201, asked.text
    pending = httpx.get(f"{gateway}/me/consent-requests", headers=citizen, timeout=10.0)
    [request] = pending.json()["items"]
    accepted = httpx.post(
        f"{gateway}/me/consent-requests/{request['id']}/accept", headers=citizen, timeout=10.0
    )
    assert accepted.status_code == 201, accepted.text
    consent = f"{gateway}/me/consents/{accepted.json()['id']}"
    receipt = httpx.get(f"{consent}/receipt", headers=citizen, timeout=10.0)
    assert receipt.status_code == 200 and receipt.json()["receipt"].count(".") == 2
    withdrawn = httpx.post(f"{consent}/withdraw", headers=citizen, timeout=10.0)
    assert withdrawn.json()["status"] == "withdrawn"
    # The seeded consent: NAV may tell Kari's school who follows her up, so her
    # kontaktlærer sees the NAV veileder's assignment.
    tone = {
        **bearer(broen("dev", "token", "--staff", teacher)),
        "Broen-Purpose": "oppfolging",
    }
    kari = httpx.post(
        f"{gateway}/participants/lookup",
        json={"national_id": synthetic_national_id("150805512")},
        headers=tone, timeout=10.0,
    )
    assert kari.status_code == 200, kari.text
    seen = httpx.get(
        f"{gateway}/participants/{kari.json()['id']}/assignments", headers=tone, timeout=10.0
    )
    roles = {(a["orgnr"], a.get("role")) for a in seen.json()["items"]}
    assert ("889640782", "veileder") in roles, seen.text
    # 9: Tone messages "the veileder" of Kari; Vera, who is, reads and answers.
    opened = httpx.post(
        f"{gateway}/threads",
        json={
            "participant_id": kari.json()["id"], "purpose": "oppfolging",
            "to": {"role": "veileder"}, "subject": "Fravær",
            "body": "Kari har vært borte mye. Kan vi snakkes?",
        },
        headers=tone, timeout=10.0,
    )
    assert opened.status_code == 201, opened.text
    vera_id = next(line.split()[0] for line in printed.splitlines() if "Vera" in line)
    vera = bearer(broen("dev", "token", "--staff", vera_id))
    inbox = httpx.get(f"{gateway}/threads", headers=vera, timeout=10.0)
    assert [t["id"] for t in inbox.json()["items"]] == [opened.json()["id"]], inbox.text
    answered = httpx.post(
        f"{gateway}/threads/{opened.json()['id']}/messages",
        json={"body": "Ja, jeg ringer deg i morgen."}, headers=vera, timeout=10.0,
    )
    assert answered.status_code == 201, answered.text
    # 10: the school's system reads the changes feed: its own assignments, NAV's veileder
    # of Kari (the seeded consent lets it), Tone's thread, and never a national id.
    feed_reader = {
        **bearer(broen("dev", "token", "--client-id", "demo-skole", "--scope", "subscriptions")),
        "Broen-Purpose": "oppfolging",
    }
    deadline = time.monotonic() + 15
    while True:
        changes = httpx.get(
            f"{gateway}/events", params={"limit": 500}, headers=feed_reader, timeout=10.0
        )
        assert changes.status_code == 200, changes.text
        kinds = {(e["type"], e["data"].get("orgnr")) for e in changes.json()["items"]}
        if ("no.broen.thread.opened", None) in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ("no.broen.thread.opened", None) in kinds, kinds
    assert ("no.broen.assignment.started", "889640782") in kinds, kinds
    assert ("no.broen.assignment.started", "310123455") in kinds, kinds
    assert changes.json()["next_cursor"]
    assert "01010750160" not in changes.text


@pytest.mark.slow
def test_make_run_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    taken = [port for port in PORTS.values() if not _port_is_free(port)]
    if taken:
        message = f"ports {taken} are already in use; `make run` needs 8000-8003 free"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if shutil.which("make") is None:
        pytest.fail("`make` is not installed")
    workdir = tmp_path / "broen"
    _copy_project(workdir)
    log = tmp_path / "make-run.log"
    collector = Collector()  # every component exports its traces here
    env = _clean_env(PYTHONPATH=str(workdir), BROEN_OTLP_ENDPOINT=collector.url)
    with log.open("wb") as output:
        # -o: the linked .venv counts as installed; never reinstall the shared venv from here.
        process = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "run"],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    pgid = process.pid
    started: set[int] = set()
    try:
        _wait_until_healthy(process, log)
        started = _descendants(process.pid)
        assert len(started) >= len(PORTS), f"expected a process per component, got {started}"
        # A service port reached directly, without the gateway's internal token, gives nothing.
        direct = httpx.get("http://127.0.0.1:8001/api/v1/organisations", timeout=5.0)
        assert direct.status_code == 401, direct.text
        unauthenticated = httpx.get("http://127.0.0.1:8000/api/v1/organisations", timeout=5.0)
        assert unauthenticated.status_code == 401
        _walk_through_the_readme(workdir, env, log.read_text())

        os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run still running {STOP_TIMEOUT_S:.0f} s after SIGINT")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            _group_members(pgid) or any(_alive(pid) for pid in started)
        ):
            time.sleep(0.2)
        assert _group_members(pgid) == set(), "processes of make run's group outlived Ctrl-C"
        survivors = sorted(pid for pid in started if _alive(pid))
        assert survivors == [], f"processes started by make run outlived Ctrl-C: {survivors}"
        busy = [port for port in PORTS.values() if not _port_is_free(port)]
        assert busy == [], f"ports still bound after Ctrl-C: {busy}\n{log.read_text()[-4000:]}"
        _assert_traces_cross_processes_without_national_ids(collector.spans)
    finally:
        collector.close()
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
        for pid in started:
            if _alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _assert_traces_cross_processes_without_national_ids(spans: list[tuple[str, Span]]) -> None:
    """A read through the gateway is one trace: the gateway's server span, its call to the
    participant service, and that service's server span (joined by `traceparent`); and no
    exported text holds eleven digits in a row (the walkthrough sent national ids)."""
    by_id = {(span.trace_id, span.span_id): (service, span) for service, span in spans}

    def parent(span: Span) -> tuple[str, Span | None]:
        return by_id.get((span.trace_id, span.parent_span_id), ("", None))

    chains = []
    for service, span in spans:
        if service != "broen-participant" or span.kind != Span.SPAN_KIND_SERVER:
            continue
        caller, client = parent(span)
        if caller != "broen-gateway" or client is None:
            continue
        origin, request = parent(client)
        if origin == "broen-gateway" and request is not None:
            chains.append((request.kind, client.kind))
    # (Background calls, the outbox pulls, start their own traces at the gateway's client.)
    assert chains, f"no request reached the participant service in one trace ({len(spans)} spans)"
    assert set(chains) == {(Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)}
    leaked = [text for text in exported_texts(spans) if re.search(r"(?<!\d)\d{11}(?!\d)", text)]
    assert leaked == []


# --- dev mode refusals -------------------------------------------------------------------------


def _broen(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BROEN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False,
    )


def test_dev_mode_with_postgresql_is_refused_by_serve(tmp_path: Path) -> None:
    env = _clean_env(
        BROEN_ENV="dev",
        BROEN_KEYS_DIR=str(tmp_path / "keys"),
        BROEN_PARTICIPANT_DATABASE_URL="postgresql+asyncpg://broen@127.0.0.1:5432/participant",
        BROEN_PARTICIPANT_PORT=str(_free_port()),
    )
    result = _broen(["serve", "participant"], env, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "BROEN_ENV=dev" in result.stderr
    assert "SQLite" in result.stderr


def test_dev_mode_on_a_public_listener_is_refused_by_serve(tmp_path: Path) -> None:
    env = _clean_env(
        BROEN_ENV="dev",
        BROEN_KEYS_DIR=str(tmp_path / "keys"),
        BROEN_PARTICIPANT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'participant.db'}",
        BROEN_PARTICIPANT_HOST="0.0.0.0",  # noqa: S104 - the setting under test
        BROEN_PARTICIPANT_PORT=str(_free_port()),
    )
    result = _broen(["serve", "participant"], env, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "BROEN_ENV=dev" in result.stderr
    assert "loopback" in result.stderr
    assert "0.0.0.0" in result.stderr  # noqa: S104 - the refused setting, named back


def test_dev_seed_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    result = _broen(["dev", "seed"], _clean_env(), tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "dev mode" in result.stderr
    assert "BROEN_ENV=dev" in result.stderr
    assert not (tmp_path / "var").exists(), "nothing may be written when refused"


def _settings(env: str, database_url: str, host: str) -> ParticipantSettings:
    return ParticipantSettings(env=env, database_url=database_url, host=host)  # type: ignore[call-arg]


SQLITE = "sqlite+aiosqlite:///var/participant.db"
POSTGRES = "postgresql+asyncpg://broen@db.internal:5432/participant"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_dev_mode_on_loopback_with_sqlite_is_allowed(host: str) -> None:
    ensure_dev_mode_is_safe(_settings("dev", SQLITE, host))


@pytest.mark.parametrize(
    ("database_url", "host", "reason"),
    [
        (POSTGRES, "127.0.0.1", "SQLite"),
        (SQLITE, "0.0.0.0", "loopback"),  # noqa: S104
        (SQLITE, "::", "loopback"),
        (SQLITE, "10.0.0.5", "loopback"),
        (SQLITE, "broen.example.org", "loopback"),
    ],
)
def test_dev_mode_elsewhere_is_refused(database_url: str, host: str, reason: str) -> None:
    with pytest.raises(DevModeRefused, match=reason):
        ensure_dev_mode_is_safe(_settings("dev", database_url, host))


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])  # noqa: S104
def test_production_mode_is_never_refused(host: str) -> None:
    ensure_dev_mode_is_safe(_settings("production", POSTGRES, host))
