"""`make bench` (web): how long the web app's pages take to render, with the demo world.

Starts the whole system as `make run` does, in a fresh temporary directory (so from an empty
`var/`): `.venv/bin/broen dev up` (dev mode, embedded SQLite, the demo world seeded) with the
project's `.venv` linked in, the project on PYTHONPATH and no inherited BROEN_* setting, in
its own process group; it needs ports 8000-8003 and 8080 free, and refuses to start
otherwise. Stopped with SIGINT to the group (Ctrl-C), SIGKILL after 15 s.

Then it makes the demo world look like a busy week, through the web app's own forms: Tone
Lærer (kontaktlærer) opens BENCH_WEB_THREADS (40) threads to "the veileder" of Kari (Vera
Veileder) and of Ola (the NAV office, nobody assigned yet); Vera answers every
BENCH_WEB_REPLY_EVERY'th (3rd) of hers; and Tone and Vera go back and forth in one thread
(the one measured). Kari's access log fills up from the reads on the way.

For each page — the sign-in page, the inbox as Vera, that thread as Vera, Kari's card as
Tone, "Mine samtykker" and "Innsyn" as Kari — BENCH_WEB_WARMUP (5) unmeasured then
BENCH_WEB_REQUESTS (50) timed GETs, sequential, one client (one signed-in browser): median,
p95 and max as the client saw them (loopback included), and the same from the web app's own
request log (the server's time, without the client's). In the same run, in blocks of 10
taking turns with the page's, the gateway API calls that page makes on each render, called
directly and one after the other (as the page does) with a token for the same person
(`broen dev token --staff/--citizen`, the staff token with the web app's scopes), timed the
same way: page / direct is what the web app adds on top of the API it calls. CPU ms per
request of every process from /proc/<pid>/stat, and the share of the machine other work
took meanwhile (the machine may be shared), for both.

The goal, from the web app's issue: pages render in under 200 ms (read off the median; never
asserted here). The figures also go to BENCH_RESULTS_DIR/web.json (default var/bench/) for
bench/report.py.

Environment: BENCH_WEB_REQUESTS (50), BENCH_WEB_WARMUP (5), BENCH_WEB_THREADS (40),
BENCH_WEB_REPLY_EVERY (3), BENCH_WEB_CONVERSATION (8: messages back and forth in the thread
measured, on top of its first).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/web.py` puts bench/ first, not the project root
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CLK_TCK,
    LOOPBACK,
    NCPU,
    BenchError,
    Interrupted,
    Results,
    catch_signals,
    cpu_seconds,
    env_int,
    log,
    pct,
    snapshot,
)

PORTS = {"gateway": 8000, "participant": 8001, "consent": 8002, "messaging": 8003, "web": 8080}
WEB = f"http://{LOOPBACK}:{PORTS['web']}"
GATEWAY = f"http://{LOOPBACK}:{PORTS['gateway']}"
GOAL_MS = 200.0
BLOCK = 10  # requests of one kind in a row, before the other kind's turn
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
REQUEST_ID_HEADER = "Broen-Request-Id"
# The scopes the web app asks for on a staff member's behalf (web/tokens.py).
WEB_STAFF_SCOPE = "participants:read messages consents:read consents:write"
PURPOSE = "oppfolging"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HIDDEN = re.compile(r'<input type="hidden" name="([\w]+)" value="([^"]*)">')


@dataclass(frozen=True)
class Config:
    requests: int
    warmup: int
    threads: int
    reply_every: int
    conversation: int

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            requests=env_int("BENCH_WEB_REQUESTS", 50),
            warmup=env_int("BENCH_WEB_WARMUP", 5, low=0),
            threads=env_int("BENCH_WEB_THREADS", 40, low=2),
            reply_every=env_int("BENCH_WEB_REPLY_EVERY", 3),
            conversation=env_int("BENCH_WEB_CONVERSATION", 8, low=0),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "warmup": self.warmup,
            "threads": self.threads,
            "reply_every": self.reply_every,
            "conversation": self.conversation,
            "backend": "sqlite (dev mode, `broen dev up`)",
        }


# --- the system, as `make run` starts it ----------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _descendants(root: int) -> set[int]:
    """Every live process below `root` (honcho starts its children in sessions of their own,
    so the process group alone does not find them)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] != "Z":
                parent_of[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parent_of.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


class DevUp:
    """`broen dev up` in a directory of its own, stopped whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "dev-up.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BROEN_")}
        self.env.update(BROEN_ENV="dev", PYTHONPATH=str(ROOT))
        self.broen = str(ROOT / ".venv" / "bin" / "broen")
        self.process: subprocess.Popen[bytes] | None = None
        self.started: dict[int, list[str]] = {}  # every process below it, with its cmdline

    def start(self) -> None:
        busy = [f"{name} :{port}" for name, port in PORTS.items() if not _port_is_free(port)]
        if busy:
            raise BenchError(
                f"ports in use: {', '.join(busy)}. This bench starts the system as `make run` "
                "does, on its fixed ports; stop whatever listens there (another `make run`?) "
                "and try again"
            )
        (self.workdir / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self.broen, "dev", "up"],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy()
        self.started = {pid: _cmdline(pid) for pid in _descendants(self.process.pid)}

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = dict(PORTS)
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"`broen dev up` exited with {self.process.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            for name, port in list(waiting.items()):
                with suppress(httpx.HTTPError):
                    url = f"http://{LOOPBACK}:{port}/healthz"
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        del waiting[name]
            time.sleep(0.2)
        if waiting:
            raise BenchError(
                f"no healthy /healthz within {START_TIMEOUT_S:.0f} s from {sorted(waiting)}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pids(self) -> dict[str, int]:
        """The server process of each component (not the shell honcho may start it with)."""
        found = {}
        for pid, argv in self.started.items():
            if "serve" not in argv or not argv[0] or Path(argv[0]).name in ("sh", "bash", "dash"):
                continue
            component = argv[argv.index("serve") + 1] if argv.index("serve") + 1 < len(argv) else ""
            if component in PORTS and _proc_stat(pid) is not None:
                found[component] = pid
        return found

    def cli(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [self.broen, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise BenchError(f"`broen {' '.join(args[:3])}` failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log(f"`broen dev up` still running {STOP_GRACE_S:.0f} s after SIGINT; killing it")
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_S)
        # What it started runs in sessions of its own: any left (same pid, same command line,
        # so never a process that merely reused the pid) is killed one by one.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._left():
            time.sleep(0.2)
        for pid in self._left():
            log(f"process {pid} ({' '.join(self.started[pid])[:60]}) outlived the stop; killing")
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def _left(self) -> list[int]:
        return [
            pid
            for pid, argv in self.started.items()
            if (stat := _proc_stat(pid)) is not None and stat[0] != "Z" and _cmdline(pid) == argv
        ]


# --- the web app, as a browser uses it ------------------------------------------------------


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(HIDDEN.findall(html))


def _location(response: httpx.Response, what: str) -> str:
    location = str(response.headers.get("location", ""))
    if response.status_code != 303 or not location or location.startswith("/logg-inn"):
        raise BenchError(f"{what}: expected a redirect, got {response.status_code} to {location!r}")
    return location


def browser() -> httpx.Client:
    """One signed-in browser: its own cookie jar, redirects not followed (each is checked)."""
    return httpx.Client(base_url=WEB, follow_redirects=False, timeout=30.0)


def sign_in(client: httpx.Client, who: str) -> None:
    page = client.get("/logg-inn")
    if page.status_code != 200:
        raise BenchError(f"GET /logg-inn answered {page.status_code}")
    csrf = hidden_inputs(page.text).get("csrf_token", "")
    done = client.post("/logg-inn/demo", data={"csrf_token": csrf, "who": who, "neste": ""})
    _location(done, f"demo sign-in as {who}")


def form_of(client: httpx.Client, path: str) -> dict[str, str]:
    page = client.get(path)
    if page.status_code != 200:
        raise BenchError(f"GET {path} answered {page.status_code}")
    return hidden_inputs(page.text)


def find_participant(client: httpx.Client, national_id: str) -> str:
    csrf = form_of(client, "/deltakere/finn")["csrf_token"]
    found = client.post("/deltakere/finn", data={"csrf_token": csrf, "national_id": national_id})
    return _location(found, "finding a participant").removeprefix("/deltakere/")


def open_thread(client: httpx.Client, participant_id: str, subject: str, body: str) -> str:
    """The card's "send a message to the participant's veileder" form, as Tone fills it in."""
    hidden = form_of(client, f"/deltakere/{participant_id}")
    sent = client.post(
        f"/deltakere/{participant_id}/melding",
        data={
            "csrf_token": hidden["csrf_token"],
            "form_key": hidden["form_key"],
            "to": hidden.get("to", "veileder"),
            "subject": subject,
            "body": body,
        },
    )
    return _location(sent, "opening a thread").removeprefix("/samtaler/").split("?")[0]


def reply(client: httpx.Client, thread_id: str, body: str) -> None:
    hidden = form_of(client, f"/samtaler/{thread_id}")
    sent = client.post(
        f"/samtaler/{thread_id}/svar",
        data={"csrf_token": hidden["csrf_token"], "form_key": hidden["form_key"], "body": body},
    )
    _location(sent, "replying")


# --- measuring ------------------------------------------------------------------------------


def templated(path: str) -> str:
    return UUID.sub("{id}", path)


@dataclass(frozen=True)
class Call:
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    purpose: str | None = None

    def text(self) -> str:
        """The call with its ids as {id}, as the report shows it."""
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        return f"GET /api/v1{templated(self.path)}" + (f"?{query}" if query else "")


@dataclass
class Page:
    key: str
    title: str
    path: str
    who: str
    client: httpx.Client
    calls: list[Call]  # what one render calls on the gateway, in order (steady state)
    token: Callable[[], str] | None  # a token for the same person, for the direct calls
    note: str = ""


@dataclass
class Timed:
    """One kind of request (the page, or its API calls direct), over blocks of requests."""

    label: str
    seconds: list[float] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    busy_ticks: int = 0
    idle_ticks: int = 0
    other_ticks: float = 0.0
    sent: int = 0

    def block(self, once: Callable[[str], str | None], times: int, pids: dict[str, int]) -> None:
        """`once(request_id)` `times` times, timed; it returns None when the answer was
        right, else what was wrong. CPU of every process and of the machine around it."""
        before = snapshot(pids, with_postgres=False)
        for _ in range(times):
            request_id = f"bench-web-{self.label}-{self.sent}"
            self.sent += 1
            started = time.perf_counter()
            problem = once(request_id)
            elapsed = time.perf_counter() - started
            if problem is None:
                self.seconds.append(elapsed)
                self.request_ids.append(request_id)
            else:
                self.errors.append(problem)
        after = snapshot(pids, with_postgres=False)
        spent = cpu_seconds(before, after, False)
        for name, used in spent.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + used
        busy = after.machine[0] - before.machine[0]
        self.busy_ticks += busy
        self.idle_ticks += after.machine[1] - before.machine[1]
        self.other_ticks += max(busy - sum(spent.values()) * CLK_TCK, 0.0)

    def figures(self) -> dict[str, float]:
        return _figures(self.seconds)

    def cpu_ms(self) -> dict[str, float]:
        """CPU ms per request of each process (loadgen: this script)."""
        return {name: used * 1000 / max(self.sent, 1) for name, used in self.cpu_s.items()}

    def machine(self) -> dict[str, float]:
        """How busy the machine was (% of all cores), and how much of it was others' work."""
        total = max(self.busy_ticks + self.idle_ticks, 1)
        return {
            "busy_pct": 100.0 * self.busy_ticks / total,
            "other_pct": 100.0 * self.other_ticks / total,
        }


def measure_page(page: Page, config: Config, pids: dict[str, int]) -> dict[str, Any]:
    """The page and, when it calls the API, those calls direct: warm-ups first, then blocks
    of BLOCK of each in turn, so that both see the same moments of the run."""

    def render(request_id: str) -> str | None:
        answer = page.client.get(page.path, headers={REQUEST_ID_HEADER: request_id})
        if answer.status_code != 200:
            return f"GET {page.path}: {answer.status_code} {answer.headers.get('location', '')}"
        return None

    each: dict[str, list[float]] = {call.text(): [] for call in page.calls}
    api: httpx.Client | None = None

    def direct(request_id: str) -> str | None:
        assert api is not None
        for call in page.calls:
            extra = {REQUEST_ID_HEADER: request_id}
            if call.purpose:
                extra["Broen-Purpose"] = call.purpose
            started = time.perf_counter()
            answer = api.get(call.path, params=call.params, headers=extra)
            each[call.text()].append(time.perf_counter() - started)
            if answer.status_code != 200:
                return f"{call.text()}: {answer.status_code} {answer.text[:200]}"
        return None

    compare = bool(page.calls) and page.token is not None
    rendered, straight = Timed(f"page-{page.key}"), Timed(f"direct-{page.key}")
    try:
        if compare:
            assert page.token is not None
            headers = {"Authorization": f"Bearer {page.token()}"}
            api = httpx.Client(base_url=f"{GATEWAY}/api/v1", headers=headers, timeout=30.0)
        for kind, once in (("page", render), ("direct", direct))[: 2 if compare else 1]:
            for i in range(config.warmup):
                problem = once(f"bench-web-warm-{kind}-{page.key}-{i}")
                if problem is not None:
                    raise BenchError(f"{page.title}, warm-up: {problem}")
        for call in each.values():
            call.clear()
        left = config.requests
        while left > 0:
            n = min(BLOCK, left)
            rendered.block(render, n, pids)
            if compare:
                straight.block(direct, n, pids)
            left -= n
    finally:
        if api is not None:
            api.close()
    found: dict[str, Any] = {
        "page": page.key,
        "title": page.title,
        "path": templated(page.path),
        "as": page.who,
        "api_calls": [call.text() for call in page.calls],
        "page_ms": rendered.figures(),
        "errors": len(rendered.errors),
        "error_examples": rendered.errors[:3],
        "under_goal": bool(rendered.seconds)
        and statistics.median(rendered.seconds) * 1000 < GOAL_MS,
        "cpu_ms": {"page": rendered.cpu_ms()},
        "machine": {"page": rendered.machine()},
        "request_ids": {"page": rendered.request_ids},
        "direct_ms": None,
        "ratio": None,
        "note": page.note,
    }
    if not compare:
        return found
    found["direct_ms"] = straight.figures()
    found["direct_call_ms"] = {text: _figures(seconds) for text, seconds in each.items()}
    found["direct_errors"] = len(straight.errors)
    found["error_examples"] += straight.errors[:3]
    found["cpu_ms"]["direct"] = straight.cpu_ms()
    found["machine"]["direct"] = straight.machine()
    found["request_ids"]["direct"] = straight.request_ids
    if straight.seconds and rendered.seconds:
        found["ratio"] = statistics.median(rendered.seconds) / statistics.median(straight.seconds)
    return found


def server_times(log_path: Path, component: str, request_ids: Sequence[str]) -> dict[str, float]:
    """Median, p95 and max of the durations `component` logged for these requests (its own
    request log: from the request's arrival to the last byte of the answer)."""
    wanted = set(request_ids)
    seconds = []
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        start = line.find("{")
        if start < 0 or '"request"' not in line:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if (
            entry.get("component") == component
            and entry.get("event") == "request"
            and entry.get("request_id") in wanted
        ):
            seconds.append(float(entry["duration_ms"]) / 1000)
    return _figures(seconds)


# --- the run --------------------------------------------------------------------------------


def build_world(up: DevUp, config: Config, world: dict[str, Any]) -> dict[str, Any]:
    people = json.loads((up.workdir / "var" / "demo" / "web-sign-in.json").read_text())
    staff = {s["name"].split()[0].lower(): s for s in people["staff"]}
    participants = {p["key"]: p for p in people["participants"]}
    tone, vera = staff["tone"], staff["vera"]
    as_tone, as_vera, as_kari = browser(), browser(), browser()
    sign_in(as_tone, f"staff:{tone['id']}")
    sign_in(as_vera, f"staff:{vera['id']}")
    sign_in(as_kari, "participant:kari")
    kari = find_participant(as_tone, participants["kari"]["national_id"])
    ola = find_participant(as_tone, participants["ola"]["national_id"])

    opened: list[float] = []
    replied: list[float] = []
    veras: list[str] = []
    log(f"bench web: Tone opens {config.threads} threads through the web form")
    for i in range(config.threads):
        about, name = (ola, "Ola") if i % 3 == 2 else (kari, "Kari")  # 2 of 3 to Vera
        started = time.perf_counter()
        thread = open_thread(
            as_tone,
            about,
            f"{name}: oppfølging uke {i % 52 + 1}",
            f"Hei! {name} har hatt fravær denne uken ({i}). Kan vi ta en prat om tiltak?",
        )
        opened.append(time.perf_counter() - started)
        if about == kari:
            veras.append(thread)
    for n, thread in enumerate(veras):
        if n % config.reply_every == 0:
            started = time.perf_counter()
            reply(as_vera, thread, "Takk, jeg tar kontakt med Kari og melder tilbake.")
            replied.append(time.perf_counter() - started)
    measured = veras[-1]  # the newest: Vera reads it now, after the conversation below
    for n in range(config.conversation):
        started = time.perf_counter()
        if n % 2 == 0:
            reply(as_tone, measured, f"Oppdatering {n}: Kari var på skolen i dag, men gikk tidlig.")
        else:
            reply(as_vera, measured, f"Svar {n}: Jeg har snakket med Kari, vi følger opp i morgen.")
        replied.append(time.perf_counter() - started)
    world.update(
        {
            "threads_opened": len(opened),
            "threads_to_vera": len(veras),
            "threads_to_office": len(opened) - len(veras),
            "replies": len(replied),
            "open_thread_form_ms": _figures(opened),
            "reply_form_ms": _figures(replied),
        }
    )
    return {
        "tone": tone,
        "vera": vera,
        "kari": kari,
        "measured_thread": measured,
        "browsers": {"tone": as_tone, "vera": as_vera, "kari": as_kari},
    }


def _figures(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    return {
        "median": statistics.median(seconds) * 1000,
        "p95": pct(seconds, 0.95),
        "max": max(seconds) * 1000,
        "n": len(seconds),
    }


def pages_of(up: DevUp, built: dict[str, Any]) -> list[Page]:
    browsers = built["browsers"]
    vera, tone, kari, thread = built["vera"], built["tone"], built["kari"], built["measured_thread"]

    def staff_token(staff_id: str) -> Callable[[], str]:
        return lambda: up.cli("dev", "token", "--staff", staff_id, "--scope", WEB_STAFF_SCOPE)

    def kari_token() -> str:
        return up.cli("dev", "token", "--citizen", kari)

    card = f"/participants/{kari}"
    return [
        Page(
            "signin",
            "Sign-in page",
            "/logg-inn",
            "anyone",
            httpx.Client(base_url=WEB, follow_redirects=False, timeout=30.0),
            [],
            None,
            "no API call to compare with: the page reads the demo people file "
            "(var/demo/web-sign-in.json) on each render, and nothing else",
        ),
        Page(
            "inbox",
            "Inbox",
            "/innboks",
            "Vera (NAV veileder)",
            browsers["vera"],
            [Call("/threads", {"limit": 100})],
            staff_token(vera["id"]),
            "the organisations list (GET /api/v1/organisations?limit=500) is read once per "
            "web app process, during the warm-up, and cached: not part of a render after that",
        ),
        Page(
            "thread",
            "A thread",
            f"/samtaler/{thread}",
            "Vera (NAV veileder)",
            browsers["vera"],
            [
                Call(f"/threads/{thread}"),
                Call(f"/threads/{thread}/messages", {"limit": 200}),
                Call(card, purpose=PURPOSE),
            ],
            staff_token(vera["id"]),
            "the first view also marks the thread read (POST .../read), during the warm-up",
        ),
        Page(
            "card",
            "Participant card",
            f"/deltakere/{kari}",
            "Tone (kontaktlærer)",
            browsers["tone"],
            [
                Call(card, purpose=PURPOSE),
                Call(f"{card}/assignments", purpose=PURPOSE),
                Call(f"{card}/consents", purpose=PURPOSE),
            ],
            staff_token(tone["id"]),
        ),
        Page(
            "consents",
            "Mine samtykker",
            "/mine-samtykker",
            "Kari (participant)",
            browsers["kari"],
            [Call("/me/consent-requests", {"limit": 100}), Call("/me/consents", {"limit": 100})],
            kari_token,
        ),
        Page(
            "access_log",
            "Innsyn",
            "/innsyn",
            "Kari (participant)",
            browsers["kari"],
            [Call("/me/access-log", {"limit": 100})],
            kari_token,
        ),
    ]


def describe_world(up: DevUp, built: dict[str, Any], world: dict[str, Any]) -> None:
    """What the measured pages show, read from the API as their people."""
    vera = up.cli("dev", "token", "--staff", built["vera"]["id"], "--scope", WEB_STAFF_SCOPE)
    kari = up.cli("dev", "token", "--citizen", built["kari"])
    thread = built["measured_thread"]
    with httpx.Client(base_url=f"{GATEWAY}/api/v1", timeout=30.0) as api:

        def items(token: str, path: str, limit: int) -> list[Any]:
            answer = api.get(
                path, params={"limit": limit}, headers={"Authorization": f"Bearer {token}"}
            )
            answer.raise_for_status()
            found: list[Any] = answer.json()["items"]
            return found

        inbox = items(vera, "/threads", 100)
        world["vera_inbox_threads"] = len(inbox)
        world["vera_inbox_unread"] = sum(1 for t in inbox if t.get("unread"))
        world["thread_messages"] = len(items(vera, f"/threads/{thread}/messages", 200))
        world["kari_access_log_first_page"] = len(items(kari, "/me/access-log", 100))
        world["kari_consents"] = len(items(kari, "/me/consents", 100))


def print_report(config: Config, world: dict[str, Any], pages: list[dict[str, Any]]) -> None:
    print()
    print(
        f"web bench: server-rendered pages with the demo world (`broen dev up`, SQLite), "
        f"{config.warmup} warm-up then {config.requests} sequential GETs per page from one "
        f"client; {NCPU} CPU(s), the client on the same cores. Goal: a page renders in under "
        f"{GOAL_MS:g} ms (median)."
    )
    if world:
        opened, replies = world.get("open_thread_form_ms", {}), world.get("reply_form_ms", {})
        print(
            f"world: Tone opened {world.get('threads_opened', 0)} threads through the card's form "
            f"({world.get('threads_to_vera', 0)} to Vera, {world.get('threads_to_office', 0)} to "
            f"the NAV office), {world.get('replies', 0)} replies through the thread's form; "
            f"form GET+POST median {opened.get('median', 0):.0f} ms (open), "
            f"{replies.get('median', 0):.0f} ms (reply)."
        )
        if "vera_inbox_threads" in world:
            print(
                f"Vera's inbox: {world['vera_inbox_threads']} threads "
                f"({world['vera_inbox_unread']} unread); the thread measured: "
                f"{world['thread_messages']} messages; Kari's access log: "
                f"{world['kari_access_log_first_page']} entries on its first page (100 at "
                f"most); Kari's consents: {world['kari_consents']}."
            )
    if not pages:
        return
    print()
    print(
        "ms as the client saw them (client) and as the web app / gateway logged them (server); "
        "direct = the same person's token calling the page's API calls on the gateway, one "
        "after the other; other% = the share of the machine's CPU "
        "other processes than Broen's and this script's took during the page's blocks; CPU ms "
        "per page render from /proc (web, gw = gateway, part = participant, cons = consent, "
        "msg = messaging; 10 ms ticks, so small figures are coarse)."
    )
    header = (
        f"{'page':<17} {'as':<20} {'median':>7} {'p95':>7} {'max':>7} {'server':>7} "
        f"{'<200':>5} {'calls':>5} {'direct':>7} {'d.p95':>7} {'ratio':>6} {'other%':>6} "
        f"{'web':>6} {'gw':>6} {'part':>6} {'cons':>6} {'msg':>6}"
    )
    print(header)
    print("-" * len(header))
    for p in pages:
        ms, direct = p["page_ms"], p.get("direct_ms")
        cpu = p["cpu_ms"]["page"]
        print(
            f"{p['title']:<17} {p['as']:<20} {ms['median']:>7.1f} {ms['p95']:>7.1f} "
            f"{ms['max']:>7.1f} {p.get('server_ms', {}).get('median', 0.0):>7.1f} "
            f"{'yes' if p['under_goal'] else 'NO':>5} {len(p['api_calls']):>5} "
            + (
                f"{direct['median']:>7.1f} {direct['p95']:>7.1f} {p['ratio']:>5.1f}x "
                if direct and p["ratio"]
                else f"{'-':>7} {'-':>7} {'-':>6} "
            )
            + f"{p['machine']['page']['other_pct']:>6.0f} "
            + " ".join(
                f"{cpu.get(n, 0.0):>6.1f}"
                for n in ("web", "gateway", "participant", "consent", "messaging")
            )
        )
    print()
    for p in pages:
        each = p.get("direct_call_ms") or {}
        calls = "; ".join(
            call + (f" ({each[call]['median']:.1f} ms median)" if each.get(call) else "")
            for call in p["api_calls"]
        )
        print(f"- {p['title']}: API calls per render, in order: {calls or 'none'}.")
        if p["note"]:
            print(f"    {p['note']}.")
        if p["errors"] or p.get("direct_errors"):
            print(
                f"    ERRORS: {p['errors']} page, {p.get('direct_errors', 0)} direct: "
                + " | ".join(p["error_examples"])
            )


def main() -> int:
    catch_signals()
    try:
        config = Config.from_env()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results = Results("web", config.settings())
    results.data["goal_ms"] = GOAL_MS
    notes: list[str] = results.data["notes"]
    world: dict[str, Any] = {}
    pages: list[dict[str, Any]] = []
    code = 0
    with tempfile.TemporaryDirectory(prefix="broen-bench-web-") as tmp:
        up = DevUp(Path(tmp))
        try:
            log("bench web: starting `broen dev up` in a fresh directory")
            up.start()
            pids = up.pids()
            missing = sorted(set(PORTS) - set(pids))
            if missing:
                notes.append(f"no CPU figures for {', '.join(missing)}: process not found.")
            built = build_world(up, config, world)
            describe_world(up, built, world)
            measured = pages_of(up, built)
            try:
                for page in measured:
                    log(f"bench web: {page.title} as {page.who}")
                    pages.append(measure_page(page, config, pids))
            finally:
                for client in {id(p.client): p.client for p in measured}.values():
                    client.close()
        except BenchError as exc:
            code = 1
            results.data["failed"] = True
            notes.append(f"FAILED: {exc}")
            log(f"bench web: FAILED: {exc}")
        except (KeyboardInterrupt, Interrupted):
            code = 130
            results.data["interrupted"] = True
            notes.append("interrupted: the figures are incomplete.")
            log("\ninterrupted: stopping the system")
        finally:
            up.stop()
        for p in pages:  # the servers' own request logs, complete now that they have stopped
            ids = p.pop("request_ids")
            p["server_ms"] = server_times(up.log_path, "web", ids["page"])
            if "direct" in ids:
                p["direct_server_ms"] = server_times(up.log_path, "gateway", ids["direct"])
    results.data["world"] = world
    results.data["pages"] = pages
    print_report(config, world, pages)
    for note in notes:
        print(note)
    path = results.write()
    log(f"bench web: results in {path}")
    if code == 0 and any(p["errors"] or p.get("direct_errors") for p in pages):
        results.data["failed"] = True
        results.write()
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
