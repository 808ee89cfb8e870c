"""`make bench` (report): docs/benchmarks.md from the results of one run.

Reads the JSON each bench script wrote to BENCH_RESULTS_DIR (default var/bench/):
run.json, policy.json, audit_verify.json, messaging.json, events.json, load.json, web.json.
Writes
BENCH_REPORT (default docs/benchmarks.md): the machine (read here, at run time), the
settings, every figure as median (min–max) over its rounds with the goal from
../shared/docs/PERFORMANCE.md and met/missed, the ratios measured in that one run, the load
run, and where the 2-core machine is the limit, worked out from those figures by the rules
stated in that section. Exits 1 when a bench left no results or failed (the report still says
what there is).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/report.py` puts bench/ first, not the root
    sys.path.insert(0, str(ROOT))

from bench.common import NCPU, postgres_answers, results_dir  # noqa: E402

BENCHES = ("run", "policy", "audit_verify", "messaging", "events", "load", "web")
SCRIPTS = {
    "run": "bench/run.py",
    "policy": "bench/policy.py",
    "audit_verify": "bench/audit_verify.py",
    "messaging": "bench/messaging.py",
    "events": "bench/events.py",
    "load": "bench/load.py",
    "web": "bench/web.py",
}
PROCESS_NAMES = {
    "gateway": "gateway",
    "participant": "participant",
    "consent": "consent",
    "messaging": "messaging",
    "postgres": "postgres (all)",
    "nats": "nats-server",
    "locust": "Locust",
    "loadgen": "load generator",
    "bench": "bench script",
}
# Rules of "where the machine is the limit" (stated in the report as well).
SATURATED_BUSY = 90.0  # % of the machine: both cores busy
ONE_CORE = 85.0  # % of one core: a single-process component is at its ceiling
LEVELLED_OFF = 0.5  # req/s grew by less than this share of the growth in users
NOISY_OTHER = 5.0  # % of the machine used by processes outside the bench


# --- reading ----------------------------------------------------------------------------------


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for name in BENCHES:
        path = directory / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def fmt(spread: dict[str, float] | None, digits: int = 1, unit: str = "") -> str:
    """'median (min–max)'; just the value when there was one round."""
    if not spread:
        return "–"
    suffix = f" {unit}" if unit else ""
    if spread.get("n", 1) == 1 or spread["min"] == spread["max"]:
        return f"{spread['median']:,.{digits}f}{suffix}"
    return (
        f"{spread['median']:,.{digits}f} ({spread['min']:,.{digits}f}–"
        f"{spread['max']:,.{digits}f}){suffix}"
    )


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "–"
    return "met" if ok else "**missed**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# --- the machine ------------------------------------------------------------------------------


def _command_version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            argv, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text else None


def _git_state() -> tuple[str, bool]:
    """The commit of the tree measured, and whether it had uncommitted changes."""
    try:
        head = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return head, bool(status)


async def _postgres_version() -> str:
    import asyncpg

    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def machine() -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0
    )
    postgres = "not reachable on 127.0.0.1:5432"
    if postgres_answers():
        try:
            postgres = asyncio.run(_postgres_version())
        except Exception as exc:
            postgres = f"answers, version unknown ({type(exc).__name__})"

    def package(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    commit, dirty = _git_state()
    return [
        ("CPU", f"{model}, {NCPU} cores (os.cpu_count)"),
        ("RAM", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("PostgreSQL", postgres),
        ("NATS", _command_version(["nats-server", "--version"]) or "nats-server not found"),
        ("wrk", _command_version(["wrk", "--version"]) or "not installed"),
        ("Locust", package("locust")),
        (
            "Broen",
            f"commit {commit}"
            + (" with uncommitted changes" if dirty else "")
            + f"; uvicorn {package('uvicorn')}, FastAPI {package('fastapi')}, "
            f"SQLAlchemy {package('sqlalchemy')}, httpx {package('httpx')}",
        ),
    ]


# --- the sections -----------------------------------------------------------------------------


def run_section(run: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Gateway vs direct: the lines of its section and its rows in the goals table."""
    settings = run["settings"]
    lines = [
        "## Read one participant: gateway vs direct (`bench/run.py`)",
        "",
        f"`GET /api/v1/participants/{{id}}` through the gateway (token, policy decision and "
        f"projection, grants from the consent service, audit entry) and directly from the "
        f"participant service; {settings['load_generator']}; {settings['duration_s']:g} s per "
        f"run, {settings['rounds']} rounds, each round measuring direct and gateway back to "
        "back at each connection count. CPU in ms per request from /proc (pg = every postgres "
        "process; on SQLite the database runs inside the services).",
        "",
    ]
    rows = []
    for s in run.get("summaries", []):
        cpu = s["cpu_ms"]

        def ms(name: str, cpu: dict[str, Any] = cpu) -> str:
            return fmt(cpu.get(name), 2) if name in cpu else "–"

        rows.append(
            [
                s["backend"],
                s["target"],
                str(s["connections"]),
                fmt(s["rps"], 0),
                fmt(s["p50_ms"], 1),
                fmt(s["p99_ms"], 1),
                str(s["errors"]),
                ms("gateway"),
                ms("participant"),
                ms("consent"),
                ms("postgres"),
                ms("loadgen"),
                fmt(s["busy_pct"], 0),
                fmt(s.get("other_pct"), 0),
            ]
        )
    lines += table(
        [
            "backend",
            "target",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "gw ms",
            "part ms",
            "cons ms",
            "pg ms",
            "load gen ms",
            "busy %",
            "other %",
        ],
        rows,
    )
    goals = []
    for ratio in run.get("ratios", []):
        if ratio["goal"] is None:
            continue
        goals.append(
            [
                f"read one participant, gateway/direct req/s, c={ratio['connections']}",
                ratio["backend"],
                fmt(ratio["spread"], 3),
                f"≥ {ratio['goal']}",
                verdict(ratio["spread"]["median"] >= ratio["goal"]),
            ]
        )
    lines += ["", "Gateway/direct, each ratio taken within one round:", ""]
    lines += table(
        ["backend", "conns", "gateway/direct", "goal"],
        [
            [r["backend"], str(r["connections"]), fmt(r["spread"], 3), f"≥ {r['goal']}"]
            for r in run.get("ratios", [])
            if r["goal"] is not None
        ],
    )
    naive = [r for r in run.get("ratios", []) if r["goal"] is None]
    for r in naive:
        lines.append(
            f"\nNaive baseline (../shared/bench proxy/dbread) c={r['connections']}: "
            f"{fmt(r['spread'], 3)}."
        )
    lines += _notes(run)
    return lines, goals


def policy_section(policy: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    goals = policy["goals"]
    lines = [
        "## Policy decision (`bench/policy.py`)",
        "",
        f"Decision + projection of participant records in-process (policy "
        f"{policy.get('policy_version', '?')}), {policy['settings']['rounds']} rounds.",
        "",
    ]
    rows = [
        ["one record", fmt(policy["one_us"], 1, "µs"), f"≤ {goals['one_us']:g} µs"],
        [
            "1,000 records one by one",
            fmt(policy["thousand_ms"], 2, "ms"),
            f"≤ {goals['thousand_ms']:g} ms",
        ],
        [
            f"1,000 participants, batch path ({policy.get('distinct_decisions', 0):.0f} "
            "distinct decisions)",
            fmt(policy["batch_ms"], 2, "ms"),
            f"≤ {goals['thousand_ms']:g} ms",
        ],
    ]
    lines += table(["what", "median (min–max)", "goal"], rows)
    goal_rows = [
        [
            "policy decision + projection, one record",
            "in-process",
            fmt(policy["one_us"], 1, "µs"),
            f"≤ {goals['one_us']:g} µs",
            verdict(policy["one_us"]["median"] <= goals["one_us"]),
        ],
        [
            "policy over 1,000 records (batch path)",
            "in-process",
            fmt(policy["batch_ms"], 2, "ms"),
            f"≤ {goals['thousand_ms']:g} ms",
            verdict(policy["batch_ms"]["median"] <= goals["thousand_ms"]),
        ],
        [
            "policy over 1,000 records (one by one)",
            "in-process",
            fmt(policy["thousand_ms"], 2, "ms"),
            f"≤ {goals['thousand_ms']:g} ms",
            verdict(policy["thousand_ms"]["median"] <= goals["thousand_ms"]),
        ],
    ]
    return lines + _notes(policy), goal_rows


def audit_section(audit: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    goal = audit["goal_s"]
    lines = [
        "## Audit verification (`bench/audit_verify.py`)",
        "",
        f"{audit['settings']['entries']:,} chained entries bulk-inserted, a signed head "
        f"exported, then `gateway.audit.verify` {audit['settings']['rounds']} times and "
        "`broen audit verify` once as a process.",
        "",
    ]
    rows, goal_rows = [], []
    for b in audit.get("backends", []):
        rows.append(
            [
                b["backend"],
                f"{b['fill_s']:.0f} s",
                fmt(b["verify_s"], 2, "s"),
                f"{b['entries_per_s']:,.0f}",
                "yes" if b["ok"] else "**no**",
                f"exit {b['cli_exit']}, {b['cli_wall_s']:.1f} s",
            ]
        )
        goal_rows.append(
            [
                f"audit verify, {b['entries']:,} entries",
                b["backend"],
                fmt(b["verify_s"], 2, "s"),
                f"≤ {goal:g} s",
                verdict(b["ok"] and b["verify_s"]["median"] <= goal),
            ]
        )
    lines += table(
        ["backend", "fill", "verify", "entries/s", "intact", "`broen audit verify`"], rows
    )
    return lines + _notes(audit), goal_rows


def messaging_section(messaging: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    settings, goals = messaging["settings"], messaging["goals"]
    lines = [
        "## Messages through the gateway (`bench/messaging.py`)",
        "",
        f"{settings['participants']} participants, {settings['threads']:,} threads to the "
        f"veileder. Inbox: the first page, {settings['inbox_requests']} sequential requests "
        f"a round, {settings['rounds']} rounds. Replies by the kontaktlærer offered open-loop "
        f"({settings['load_generator']}) at each rate for {settings['duration_s']:g} s; "
        f"every {settings['visible_every']}th is followed by the veileder's inbox read until "
        f"it shows the message (send→visible). The goal rate, {goals['rate']:g} msg/s, is run "
        f"{settings['rounds']} times in all.",
    ]
    goal_rows = []
    for b in messaging.get("backends", []):
        lines += ["", f"### {b['backend']}", ""]
        for phase in b["phases"]:
            lines.append(
                f"- set-up {phase['what']}: {phase['count']:,} calls, {phase['rate']:.0f}/s"
            )
        inbox = b.get("inbox", {})
        if inbox:
            lines += [""]
            lines += table(
                ["inbox first page", "median ms", "p90 ms", "p99 ms", "errors"],
                [
                    [
                        target,
                        fmt(row["median_ms"], 1),
                        fmt(row["p90_ms"], 1),
                        fmt(row["p99_ms"], 1),
                        str(row["errors"]),
                    ]
                    for target, row in inbox.items()
                ],
            )
            if "gateway" in inbox:
                median = inbox["gateway"]["median_ms"]
                goal_rows.append(
                    [
                        "inbox first page through the gateway, median (bench/messaging.py's "
                        "own goal)",
                        b["backend"],
                        fmt(median, 1, "ms"),
                        f"≤ {goals['inbox_median_ms']:g} ms",
                        verdict(median["median"] <= goals["inbox_median_ms"]),
                    ]
                )
        if b["steps"]:
            lines += ["", "Replies, one round per rate:", ""]
            lines += table(
                [
                    "offered/s",
                    "achieved/s",
                    "send p50",
                    "send p99",
                    "visible p50",
                    "visible p99",
                    "errors",
                    "busy %",
                    "other %",
                    "CPU ms/msg (gw, part, cons, msg, pg)",
                ],
                [
                    [
                        f"{s['offered']:g}",
                        f"{s['achieved']:.1f}",
                        f"{s['send_p50_ms']:.1f}",
                        f"{s['send_p99_ms']:.1f}",
                        f"{s['visible_p50_ms']:.1f}",
                        f"{s['visible_p99_ms']:.1f}",
                        str(s["errors"]),
                        f"{s['busy_pct']:.0f}",
                        f"{s.get('other_pct', 0.0):.0f}",
                        _cpu_list(
                            s["cpu_ms"],
                            ("gateway", "participant", "consent", "messaging", "postgres"),
                        ),
                    ]
                    for s in b["steps"]
                ],
            )
            if b["skipped_rates"]:
                lines.append(
                    f"\nNot run (the rate before was overloaded): "
                    f"{', '.join(f'{r:g}' for r in b['skipped_rates'])} msg/s."
                )
            best = b["best_rate_meeting_goal"]
            lines.append(
                f"\nHighest rate meeting send→visible p99 ≤ {goals['visible_p99_ms']:g} ms "
                f"with no errors: {f'{best:g} msg/s' if best is not None else 'none'}."
            )
        at_goal = b.get("goal_rate")
        if at_goal:
            n = len(at_goal["rounds"])
            lines.append(
                f"\nAt {goals['rate']:g} msg/s, {n} round(s): achieved "
                f"{fmt(at_goal['achieved'], 1)} msg/s, send p99 {fmt(at_goal['send_p99_ms'], 1)} "
                f"ms, send→visible p99 {fmt(at_goal['visible_p99_ms'], 1)} ms; "
                f"{at_goal['met']} of {n} rounds meet the goal"
                + (" (not run again: overloaded)." if n < settings["rounds"] else ".")
            )
            goal_rows.append(
                [
                    f"messages at {goals['rate']:g}/s, send→inbox p99",
                    b["backend"],
                    f"{fmt(at_goal['achieved'], 0)} msg/s, p99 "
                    f"{fmt(at_goal['visible_p99_ms'], 0, 'ms')}",
                    f"{goals['rate']:g}/s, ≤ {goals['visible_p99_ms']:g} ms",
                    _rounds_verdict(at_goal["met"], n),
                ]
            )
        elif b["steps"]:
            last = b["steps"][-1]
            goal_rows.append(
                [
                    f"messages at {goals['rate']:g}/s, send→inbox p99",
                    b["backend"],
                    f"not reached: overloaded at {last['offered']:g}/s "
                    f"({last['achieved']:.0f} achieved)",
                    f"{goals['rate']:g}/s, ≤ {goals['visible_p99_ms']:g} ms",
                    verdict(False),
                ]
            )
        lines += [f"\n{note}" for note in b["notes"]]
    return lines + _notes(messaging), goal_rows


def events_section(events: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    settings, goals = events["settings"], events["goals"]
    lines = [
        "## Events ingested in batches (`bench/events.py`)",
        "",
        f"NAV pushes `POST /api/v1/events:batch` in batches of {settings['batch']} "
        f"open-loop at each rate for {settings['duration_s']:g} s "
        f"({settings['load_generator']}); the lag is from each event's CloudEvents time to "
        "its receipt by a changes-feed poller (feed) and a JetStream consumer (nats); the "
        f"goal rate, {goals['rate']:,.0f}/s, is run {settings['rounds']} times in all. "
        "Webhooks are measured separately, the other consumers stopped.",
    ]
    goal_rows = []
    for r in events.get("runs", []):
        lines += ["", f"### {r['label']}", ""]
        consumers = list(r["steps"][0]["deliveries"]) if r["steps"] else []
        lines += table(
            [
                "offered/s",
                "achieved/s",
                "batch p50",
                "batch p99",
                *[f"{c} lag p50 / p99 ms" for c in consumers],
                "errors",
                "busy %",
                "other %",
                "CPU ms/event (gw, part, pg, nats)",
            ],
            [_event_row(s, consumers) for s in r["steps"]],
        )
        if r["skipped"]:
            lines.append(f"\nNot run (overloaded): {', '.join(f'{x:g}' for x in r['skipped'])}/s.")
        at_goal = r.get("goal_rate")
        if at_goal:
            lags = ", ".join(
                f"{name} lag p99 {fmt(spread, 0, 'ms')}"
                for name, spread in at_goal["lag_p99_ms"].items()
            )
            lines.append(
                f"\nAt {goals['rate']:,.0f}/s, {at_goal['rounds']} round(s): achieved "
                f"{fmt(at_goal['achieved'], 0)}/s, {lags}; {at_goal['met']} of "
                f"{at_goal['rounds']} rounds meet both goals"
                + (
                    " (not run again: overloaded)."
                    if at_goal["rounds"] < settings["rounds"]
                    else "."
                )
            )
            lag_text = "; ".join(
                f"{name} p99 {fmt(spread, 0, 'ms')}"
                for name, spread in at_goal["lag_p99_ms"].items()
            )
            goal_rows.append(
                [
                    f"events at {goals['rate']:,.0f}/s in batches, delivery lag p99",
                    f"{r['backend']}, {r['transport']}",
                    f"{fmt(at_goal['achieved'], 0)}/s; {lag_text}",
                    f"{goals['rate']:,.0f}/s, ≤ {goals['lag_p99_ms'] / 1000:g} s",
                    _rounds_verdict(at_goal["met"], at_goal["rounds"]),
                ]
            )
        elif r["steps"]:
            last = r["steps"][-1]
            goal_rows.append(
                [
                    f"events at {goals['rate']:,.0f}/s in batches, delivery lag p99",
                    f"{r['backend']}, {r['transport']}",
                    f"not reached: overloaded at {last['offered']:g}/s",
                    f"{goals['rate']:,.0f}/s, ≤ {goals['lag_p99_ms'] / 1000:g} s",
                    verdict(False),
                ]
            )
        if r["webhook_steps"]:
            lines += ["", "Webhooks (signed, verified by a local receiver):", ""]
            lines += table(
                [
                    "offered/s",
                    "delivered/s",
                    "lag p50 / p99 ms",
                    "missing",
                    "busy %",
                ],
                [
                    [
                        f"{s['offered']:g}",
                        f"{s['deliveries']['webhook']['rate']:.0f}",
                        f"{s['deliveries']['webhook']['lag_p50_ms']:.0f} / "
                        f"{s['deliveries']['webhook']['lag_p99_ms']:.0f}",
                        str(s["deliveries"]["webhook"]["missing"]),
                        f"{s['busy_pct']:.0f}",
                    ]
                    for s in r["webhook_steps"]
                    if "webhook" in s["deliveries"]
                ],
            )
            best = r["webhook_best_rate"]
            lines.append(
                f"\nHighest webhook rate delivered in full with lag p99 ≤ 1 s: "
                f"{f'{best:g}/s' if best is not None else 'none of the rates run'}."
            )
        lines += [f"\n{note}" for note in r["notes"]]
    return lines + _notes(events), goal_rows


def _event_row(step: dict[str, Any], consumers: list[str]) -> list[str]:
    lags = []
    for name in consumers:
        d = step["deliveries"].get(name)
        lags.append(
            f"{d['lag_p50_ms']:.0f} / {d['lag_p99_ms']:.0f}"
            + (f" ({d['missing']} missing)" if d["missing"] else "")
            if d
            else "–"
        )
    return [
        f"{step['offered']:g}",
        f"{step['achieved']:.0f}",
        f"{step['batch_p50_ms']:.0f}",
        f"{step['batch_p99_ms']:.0f}",
        *lags,
        str(step["errors"] + step["refused"]),
        f"{step['busy_pct']:.0f}",
        f"{step['other_pct']:.0f}",
        _cpu_list(step["cpu_ms"], ("gateway", "participant", "postgres", "nats")),
    ]


def load_section(load: dict[str, Any]) -> list[str]:
    settings = load["settings"]
    lines = [
        "## Load run: concurrent clients of mixed traffic (`bench/load.py`)",
        "",
        f"{settings['load_generator']}. Staff users (kontaktlærer and veileder, half each, "
        f"staff tokens) with {settings['think_s'][0]:g}–{settings['think_s'][1]:g} s think "
        f"time, each request a participant card, the inbox's first page or a reply "
        f"({settings['mix']['card']}:{settings['mix']['inbox']}:{settings['mix']['reply']}); "
        f"on top, {settings['nav_users']} NAV systems (system token) each pushing "
        f"{settings['batch']} timeline events every {settings['nav_pacing_s']:g} s "
        f"({settings['offered_events_per_s']:g} events/s). {settings['participants']} "
        f"participants, {settings['threads']} threads; {settings['duration_s']:g} s per run. "
        "Per request type Locust's figures over the run; steady = all users running; CPU "
        "from /proc over the steady state in % of one core (the machine has "
        f"{NCPU * 100}%).",
    ]
    for b in load.get("backends", []):
        lines += ["", f"### {b['backend']}"]
        for level in b["levels"]:
            lines += [
                "",
                f"**{level['users']} staff users + {settings['nav_users']} NAV systems**: "
                f"{level['steady_rps']:.0f} req/s steady, "
                f"{level['steady_failures_per_s']:.1f} failures/s; machine busy "
                f"{level['busy_pct']:.0f}% (other work {level['other_pct']:.0f}%).",
                "",
            ]
            lines += table(
                ["request", "count", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms"],
                [
                    [
                        f"`{row['name']}`" if row["name"] != "all requests" else "**all**",
                        f"{row['requests']:,}",
                        str(row["failures"]),
                        f"{row['rps']:.1f}",
                        f"{row['p50_ms']:.0f}",
                        f"{row['p95_ms']:.0f}",
                        f"{row['p99_ms']:.0f}",
                    ]
                    for row in level["requests"]
                ],
            )
            names = [n for n in PROCESS_NAMES if n in level["cpu_pct"]]
            lines += [""]
            lines += table(
                ["CPU", *[PROCESS_NAMES[n] for n in names]],
                [
                    ["% of one core", *[f"{level['cpu_pct'][n]:.0f}" for n in names]],
                    ["ms per request", *[f"{level['cpu_ms'][n]:.2f}" for n in names]],
                ],
            )
            for failure in level["failures"][:5]:
                lines.append(
                    f"\n- failure ×{failure['count']}: `{failure['name']}`: {failure['error']}"
                )
        lines += [f"\n{note}" for note in b["notes"]]
    return lines + _notes(load)


def web_section(web: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The web app's pages: render time against the issue's goal, and page / direct API."""
    settings, world, goal = web["settings"], web.get("world", {}), web["goal_ms"]
    lines = [
        "## Web pages (`bench/web.py`)",
        "",
        f"The system started as `make run` does (`broen dev up`: dev mode, SQLite), the demo "
        f"world made busier through the web app's own forms: "
        f"{world.get('threads_opened', 0)} threads opened by the kontaktlærer "
        f"({world.get('threads_to_vera', 0)} to Vera, {world.get('threads_to_office', 0)} to "
        f"the NAV office) and {world.get('replies', 0)} replies. Each page: "
        f"{settings['warmup']} warm-up then {settings['requests']} sequential GETs from one "
        "signed-in client; ms as the client saw them (loopback included), and as the web app "
        "logged them (server). Direct: the API calls one render makes, called one after "
        "the other on the gateway with a token for the same person, in blocks of 10 taking "
        "turns with the page's; page/direct measured in this one run. CPU in ms per page "
        "render from /proc (services: participant, consent and messaging); other % = the share "
        "of the machine taken by processes outside the bench meanwhile.",
        "",
    ]
    if "vera_inbox_threads" in world:
        lines += [
            f"Vera's inbox held {world['vera_inbox_threads']} threads, the thread measured "
            f"{world['thread_messages']} messages, Kari's access log "
            f"{world['kari_access_log_first_page']} entries on its first page (100 at most).",
            "",
        ]
    rows, goal_rows = [], []
    for p in web.get("pages", []):
        ms, direct = p["page_ms"], p.get("direct_ms")
        cpu = p["cpu_ms"]["page"]
        server = p.get("server_ms") or {}
        rows.append(
            [
                f"{p['title']} (`{p['path']}`)",
                p["as"],
                str(len(p["api_calls"])),
                f"{ms['median']:.1f}",
                f"{ms['p95']:.1f}",
                f"{ms['max']:.1f}",
                f"{server['median']:.1f}" if server else "–",
                f"{direct['median']:.1f}" if direct else "–",
                f"{p['ratio']:.2f}×" if p.get("ratio") else "–",
                f"{cpu.get('web', 0.0):.1f}",
                f"{cpu.get('gateway', 0.0):.1f}",
                f"{sum(cpu.get(n, 0.0) for n in ('participant', 'consent', 'messaging')):.1f}",
                f"{p['machine']['page']['other_pct']:.0f}",
                str(p["errors"] + p.get("direct_errors", 0)),
                verdict(p["under_goal"] and not p["errors"]),
            ]
        )
        goal_rows.append(
            [
                f"web page {p['title']}, median render (the web app's issue)",
                "sqlite (dev)",
                f"{ms['median']:.1f} ms",
                f"< {goal:g} ms",
                verdict(p["under_goal"] and not p["errors"]),
            ]
        )
    lines += table(
        [
            "page",
            "as",
            "API calls",
            "median ms",
            "p95 ms",
            "max ms",
            "server median ms",
            "direct median ms",
            "page/direct",
            "web CPU ms",
            "gw CPU ms",
            "services CPU ms",
            "other %",
            "errors",
            f"< {goal:g} ms",
        ],
        rows,
    )
    lines += ["", "The API calls each render makes, in order (direct median of each):", ""]
    for p in web.get("pages", []):
        each = p.get("direct_call_ms") or {}
        calls = "; ".join(
            f"`{call}`" + (f" {each[call]['median']:.1f} ms" if each.get(call) else "")
            for call in p["api_calls"]
        )
        lines.append(
            f"- {p['title']}: {calls or 'none'}" + (f" ({p['note']})" if p["note"] else "") + "."
        )
    return lines + _notes(web), goal_rows


# --- where the machine is the limit -----------------------------------------------------------


def limits_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "## Where the 2-core machine is the limit",
        "",
        f"Worked out from the figures above by fixed rules: the machine is saturated when it "
        f"is ≥ {SATURATED_BUSY:g}% busy; a component is at its ceiling when its process uses "
        f"≥ {ONE_CORE:g}% of one core (each runs as one uvicorn worker, one event loop; on "
        "SQLite the queries run in aiosqlite's thread beside it, so a process can pass 100%); "
        "throughput has levelled off when req/s grew by less than "
        f"{LEVELLED_OFF:.0%} of the growth in users; other work matters when processes "
        f"outside the bench used ≥ {NOISY_OTHER:g}% of the machine.",
        "",
    ]
    found = len(lines)
    load = results.get("load")
    for b in load.get("backends", []) if load else []:
        levels = b["levels"]
        if not levels:
            continue
        top = levels[-1]
        lines.append(
            f"- **Load run, {b['backend']}, {top['users']} staff users**: " + _load_limit(levels)
        )
    run = results.get("run")
    for s in run.get("summaries", []) if run else []:
        if s["backend"] == "naive" or s["connections"] != max(run["settings"]["connections"]):
            continue
        lines.append(
            f"- **Reads {'through the gateway' if s['target'] == 'gateway' else 'direct'}, "
            f"{s['backend']}, c={s['connections']}**: " + _read_limit(s)
        )
    messaging = results.get("messaging")
    for b in messaging.get("backends", []) if messaging else []:
        if b["steps"]:
            lines.append(f"- **Messages, {b['backend']}**: " + _step_limit(b["steps"][-1], "msg"))
    events = results.get("events")
    for r in events.get("runs", []) if events else []:
        if r["steps"]:
            lines.append(f"- **Events, {r['label']}**: " + _step_limit(r["steps"][-1], "event"))
    if len(lines) == found:
        lines.append("- No figures to work from.")
    return lines


def _top(cpu: dict[str, float], skip: tuple[str, ...] = ()) -> tuple[str, float]:
    candidates = {k: v for k, v in cpu.items() if k not in skip}
    name = max(candidates, key=lambda k: candidates[k])
    return name, candidates[name]


def _load_limit(levels: list[dict[str, Any]]) -> str:
    top = levels[-1]
    parts = []
    parts.append(_busy_text(top["busy_pct"], top["other_pct"]))
    name, share = _top(top["cpu_pct"], ("locust", "bench"))
    if share >= ONE_CORE:
        parts.append(
            f"the {PROCESS_NAMES[name]} used {share:.0f}% of one core — at its one-process "
            "ceiling, the first bottleneck"
        )
    else:
        parts.append(
            f"the busiest component, the {PROCESS_NAMES[name]}, used {share:.0f}% of one "
            "core: no process is at its one-core ceiling"
            + (
                ", the work is spread over the components, so the two cores together are the "
                "limit (more worker processes would find no idle core)"
                if round(top["busy_pct"]) >= SATURATED_BUSY
                else ""
            )
        )
    used = sum(top["cpu_pct"].values())
    generator = top["cpu_pct"].get("locust", 0.0)
    if used:
        parts.append(
            f"Locust itself used {generator:.0f}% of one core ({100 * generator / used:.0f}% of "
            "the CPU spent), CPU the servers did not get"
        )
    if len(levels) > 1:
        low = levels[-2]
        users = top["users"] / low["users"]
        rps = top["steady_rps"] / max(low["steady_rps"], 1e-9)
        p50 = _all_p50(top) / max(_all_p50(low), 1e-9)
        if rps - 1 < LEVELLED_OFF * (users - 1):
            parts.append(
                f"from {low['users']} to {top['users']} users (×{users:.1f}) req/s grew only "
                f"×{rps:.2f} while the median latency grew ×{p50:.1f}: throughput has levelled "
                f"off at about {top['steady_rps']:.0f} req/s"
            )
        else:
            parts.append(
                f"from {low['users']} to {top['users']} users (×{users:.1f}) req/s grew "
                f"×{rps:.2f}: not yet levelled off"
            )
    return "; ".join(parts) + "."


def _busy_text(busy: float, other: float | None) -> str:
    if round(busy) < SATURATED_BUSY:
        return f"the machine was {busy:.0f}% busy, not saturated"
    if other is not None and other >= NOISY_OTHER:
        return (
            f"both cores were busy ({busy:.0f}%), {other:.0f}% of the machine by other work "
            "outside the bench: the CPU is the limit, and the figures are pessimistic"
        )
    return (
        f"both cores were busy ({busy:.0f}%) with the bench's own processes: the CPU is the limit"
    )


def _all_p50(level: dict[str, Any]) -> float:
    return next((r["p50_ms"] for r in level["requests"] if r["name"] == "all requests"), 0.0)


def _read_limit(summary: dict[str, Any]) -> str:
    cpu = {k: v["median"] for k, v in summary["cpu_ms"].items()}
    total = sum(cpu.values())
    rps = summary["rps"]["median"]
    parts = [f"{total:.2f} ms of CPU per request in all (the load generator's included)"]
    if total:
        ceiling = NCPU * 1000 / total
        parts.append(
            f"so the {NCPU} cores allow at most about {ceiling:.0f} req/s; measured {rps:.0f} "
            f"({100 * rps / ceiling:.0f}% of that)"
        )
    parts.append(_process_share(cpu, rps, ("loadgen",)))
    other = summary.get("other_pct")
    parts.append(_busy_text(summary["busy_pct"]["median"], other["median"] if other else None))
    return "; ".join(parts) + "."


def _process_share(cpu_ms: dict[str, float], rate: float, skip: tuple[str, ...]) -> str:
    """The busiest process's share of one core at `rate` units/s, from its CPU ms per unit
    (about: CPU spent after the measured span, in a drain, counts as if within it)."""
    candidates = {k: v for k, v in cpu_ms.items() if k not in skip and k != "postgres"}
    if not candidates:
        return "no per-process figures"
    name = max(candidates, key=lambda k: candidates[k])
    share = candidates[name] * rate / 10  # ms/unit × units/s → ms/s → % of one core
    text = (
        f"the busiest process, the {PROCESS_NAMES.get(name, name)}, at about {share:.0f}% "
        "of one core"
    )
    if share >= ONE_CORE:
        return text + " — its one process is at its ceiling: that is the limit"
    return text


def _step_limit(step: dict[str, Any], unit: str) -> str:
    cpu = {k: v for k, v in step["cpu_ms"].items() if k != "loadgen"}
    total = sum(cpu.values()) + step["cpu_ms"].get("loadgen", 0.0)
    busy = step["busy_pct"]
    parts = [
        f"at the highest rate run, {step['offered']:g}/s offered ({step['achieved']:.0f}/s "
        f"achieved), {_busy_text(busy, step.get('other_pct'))}",
        f"{total:.2f} ms of CPU per {unit} in all over the step and its drain (the bench's "
        "own load generator and consumers included)",
        _process_share(cpu, step["achieved"], ()),
    ]
    top = max((v for k, v in cpu.items() if k != "postgres"), default=0.0)
    if round(busy) < SATURATED_BUSY and top * step["achieved"] / 10 < ONE_CORE:
        parts.append(
            "neither the cores nor any one process's core is full, so the limit at this rate "
            "is not computing but waiting (a loop's pace, a lock, a commit)"
        )
    return "; ".join(parts) + "."


# --- the document -----------------------------------------------------------------------------


def _cpu_list(cpu: dict[str, float], names: tuple[str, ...]) -> str:
    return ", ".join(f"{cpu[n]:.2f}" if n in cpu else "–" for n in names)


def _rounds_verdict(met: int, rounds: int) -> str:
    if met == rounds:
        return "met"
    if met == 0:
        return "**missed**"
    return f"met in {met} of {rounds} rounds"


def _notes(found: dict[str, Any]) -> list[str]:
    return [f"\n{note}" for note in found.get("notes", [])]


def _when(found: dict[str, dict[str, Any]]) -> tuple[str, str, float]:
    starts = [datetime.fromisoformat(r["started_at"]) for r in found.values()]
    ends = [datetime.fromisoformat(r["finished_at"]) for r in found.values()]
    return (
        min(starts).strftime("%Y-%m-%d %H:%M UTC"),
        max(ends).strftime("%Y-%m-%d %H:%M UTC"),
        (max(ends) - min(starts)).total_seconds(),
    )


def build(found: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    problems = []
    for name in BENCHES:
        if name not in found:
            problems.append(f"{SCRIPTS[name]} left no results")
        elif found[name].get("failed") or found[name].get("interrupted"):
            problems.append(f"{SCRIPTS[name]} failed or was interrupted (see its notes)")
    sections: list[list[str]] = []
    goal_rows: list[list[str]] = []
    for name, make in (
        ("run", run_section),
        ("policy", policy_section),
        ("audit_verify", audit_section),
        ("messaging", messaging_section),
        ("events", events_section),
        ("load", lambda found: (load_section(found), [])),
        ("web", web_section),
    ):
        if name in found:
            try:
                section, goals = make(found[name])
            except (KeyError, TypeError, IndexError, ValueError) as exc:
                problems.append(f"{SCRIPTS[name]}: results not readable ({exc!r})")
                continue
            sections.append(section)
            goal_rows += goals
    try:
        sections.append(limits_section(found))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        problems.append(f"the limits section: results not readable ({exc!r})")

    lines = [
        "# Broen benchmarks",
        "",
        "Generated by `make bench` (bench/report.py) from the results of one run; do not edit "
        "by hand. Figures, not asserts: each is the median of its rounds with the spread "
        "(min–max) in brackets; the goals are those of ../shared/docs/PERFORMANCE.md.",
        "",
    ]
    if found:
        start, end, seconds = _when(found)
        per_script = ", ".join(
            f"{SCRIPTS[n].removeprefix('bench/')} {found[n]['seconds'] / 60:.1f}"
            for n in BENCHES
            if n in found
        )
        lines += [
            f"Run from {start} to {end}: {seconds / 60:.0f} minutes in all ({per_script} minutes).",
            "",
        ]
    if problems:
        lines += ["**Incomplete:** " + "; ".join(problems) + ".", ""]
    lines += ["## Machine", ""]
    lines += table(["", ""], [[k, v] for k, v in machine()])
    lines += [
        "",
        "The servers, PostgreSQL, NATS and the load generator all share these cores (the "
        "`other %` figures show how much other work on the machine took).",
        "",
        "## Settings",
        "",
    ]
    for name in BENCHES:
        if name in found:
            settings = ", ".join(f"{k} {_setting(v)}" for k, v in found[name]["settings"].items())
            lines.append(f"- `{SCRIPTS[name]}`: {settings}")
    lines += ["", "## Goals, measured in this one run", ""]
    lines += table(
        ["goal (../shared/docs/PERFORMANCE.md)", "backend", "measured", "goal", ""], goal_rows
    )
    for section in sections:
        lines += ["", *section]
    return "\n".join(lines) + "\n", problems


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(str(v) if not isinstance(v, float) else f"{v:g}" for v in value)
    if isinstance(value, dict):
        return "/".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def main() -> int:
    directory = results_dir()
    target = Path(os.environ.get("BENCH_REPORT") or ROOT / "docs" / "benchmarks.md")
    found = load_results(directory)
    text, problems = build(found)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"report: {target} from {len(found)} results in {directory}")
    for problem in problems:
        print(f"report: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
