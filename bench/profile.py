"""Where the services spend their time under load: py-spy samples every service of a fresh
stack while N reports go through the network, then prints, per service, the functions that
hold the most samples (inclusive) and the project's own lines that hold the most (self).

    python bench/profile.py [--reports N] [--out DIR] [--send-rate R] [--idle]

``--send-rate R`` sends the reports at R a second instead of all at once (where a paced run's
latency goes); ``--idle`` samples waiting threads too (py-spy --idle), so a service's wall
time shows, not only its CPU.

py-spy (``pip install py-spy``; it needs ptrace, so root or CAP_SYS_PTRACE) writes one
collapsed-stack file per service into DIR (default: a temporary folder): feed one to
``flamegraph.pl`` or https://www.speedscope.app for the flame graph. Findings are kept in
bench/README.md ("Profiles"). It prints figures only; nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.e2e import Deliveries, cases_of, make_reports, send_all, wait_for  # noqa: E402
from bench.stacks import Senders  # noqa: E402
from contracts.reference import ingress_topic  # noqa: E402
from punte.stack import SERVICES, Stack  # noqa: E402
from punte.status import operator_token  # noqa: E402

console = Console()
PROJECT_DIRS = ("runtime/", "services/", "contracts/", "punte/")


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: one ``frame;frame;...;frame count`` line per distinct stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def short(frame: str) -> str:
    """``function (path/to/file.py:line)`` without the venv or project prefix."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summary(stacks: Counter[tuple[str, ...]], top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, the functions with the most inclusive samples (each counted once per
    stack), and the project's frames that were innermost (self) most often."""
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks.items():
        for name in {short(f).rsplit(":", 1)[0] + ")" for f in frames}:
            inclusive[name] += count
        mine = [f for f in frames if any(d in f for d in PROJECT_DIRS) and ".venv" not in f]
        if mine:
            own[short(mine[-1])] += count
    return total, inclusive.most_common(top), own.most_common(top)


def show(name: str, stacks: Counter[tuple[str, ...]], top: int) -> None:
    total, inclusive, own = summary(stacks, top)
    for title, column, rows in ((f"{name}: {total} samples", ("inclusive %", "function"), inclusive),
                                (f"{name}: innermost project frame", ("%", "line"), own)):
        table = Table(title=title)
        table.add_column(column[0], justify="right")
        table.add_column(column[1])
        for where, count in rows:
            table.add_row(f"{100 * count / max(total, 1):.1f}", where)
        console.print(table)


async def load(stack: Stack, n: int, seed: int, timeout: float, send_rate: float | None = None) -> float:
    reports = make_reports(stack, random.Random(seed), n)
    senders = Senders(stack)
    await senders.start({ingress_topic(reporter) for reporter, _ in reports})
    deliveries = Deliveries(stack.kafka_bootstrap)
    await deliveries.start()
    try:
        start = time.monotonic()
        await send_all(senders, reports, {}, rate=send_rate)
        ids = [e.id for _, e in reports]
        await wait_for(lambda: all(i in deliveries.outcomes for i in ids), "every report answered", timeout)
        case_of = await cases_of(deliveries, ids, timeout)
        await wait_for(lambda: all(c in deliveries.referred for c in case_of.values() if c),
                       "every lead notified", timeout)
        token = operator_token(stack.state, stack.url("identity"))
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            # Until the audit has stopped growing for 2 s.
            last, steady = -1, 0
            while steady < 8:
                count = (await client.get(stack.url("audit") + "/stats")).json()["counts"]["audit_entries"]
                steady = steady + 1 if count == last else 0
                last = count
                await asyncio.sleep(0.25)
        return time.monotonic() - start
    finally:
        await deliveries.stop()
        await senders.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=None, help="keep the collapsed stacks here")
    parser.add_argument("--send-rate", type=float, default=None, help="reports a second (default: all at once)")
    parser.add_argument("--idle", action="store_true", help="sample waiting threads too (wall time)")
    args = parser.parse_args()
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        console.print("[red]py-spy is not installed: pip install py-spy[/red]")
        return 2
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory(prefix="punte-profile-") as tmp:
        out = args.out or Path(tmp) / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        stack = Stack(Path(tmp) / "state")
        spies: dict[str, subprocess.Popen] = {}
        try:
            stack.start()
            for name in SERVICES:
                spies[name] = subprocess.Popen(
                    [spy, "record", "--nonblocking", "--rate", str(args.rate), "--format", "raw",
                     *(["--idle"] if args.idle else []),
                     "--output", str(out / f"{name}.txt"), "--pid", str(stack.processes[name].pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            wall = asyncio.run(load(stack, args.reports, args.seed, args.timeout, args.send_rate))
        finally:
            for spy_process in spies.values():
                spy_process.send_signal(signal.SIGINT)
            for spy_process in spies.values():
                spy_process.wait(timeout=30)
            stack.stop()
        console.print(f"{args.reports} reports through the network and audited in {wall:.1f} s")
        for name in SERVICES:
            path = out / f"{name}.txt"
            if path.exists():
                show(name, parse_collapsed(path.read_text()), args.top)
        if args.out:
            console.print(f"collapsed stacks kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
