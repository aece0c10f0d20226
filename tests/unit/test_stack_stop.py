"""Stopping the network (`punte.stack.Stack.stop`, `punte up`'s Ctrl-C, every end-to-end
test's teardown): every service process is told to stop at once and given its grace together,
then the identity provider and the mail server, which the services may still call while they
stop. One after the other, a network of two replicas took 14 s to stop, each process's
graceful shutdown (its consumers leaving their groups, its relay's last publish) waited for
in turn."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from punte.stack import Stack

# A process that, told to stop, says so, takes a while to finish and then says it has.
GRACEFUL = """
import signal, sys, time
from pathlib import Path
journal = Path(sys.argv[1])
name = sys.argv[2]
def stop(*_):
    with journal.open("a") as f:
        f.write(f"told {name}\\n")
    time.sleep(0.5)
    with journal.open("a") as f:
        f.write(f"done {name}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[3]).touch()
while True:
    time.sleep(0.1)
"""


def test_every_service_is_told_to_stop_before_any_has_finished_and_the_helpers_after_them(tmp_path: Path):
    stack = Stack(tmp_path / "state", replicas=2)
    journal = tmp_path / "journal"
    names = [*stack.service_processes, "mail", "identity"]
    for name in names:
        ready = tmp_path / f"{name}.ready"
        stack.processes[name] = subprocess.Popen([sys.executable, "-c", GRACEFUL, str(journal), name, str(ready)],
                                                 start_new_session=True)
    for name in names:
        while not (tmp_path / f"{name}.ready").exists():
            assert stack.processes[name].poll() is None, f"{name} exited before it was ready"

    stack.stop()

    lines = journal.read_text().splitlines()
    services = stack.service_processes
    assert sorted(line.split()[1] for line in lines if line.startswith("told")) == sorted(names)
    first_done = min(lines.index(f"done {name}") for name in services)
    assert all(lines.index(f"told {name}") < first_done for name in services), lines
    last_service_done = max(lines.index(f"done {name}") for name in services)
    assert all(lines.index(f"told {name}") > last_service_done for name in ("mail", "identity")), lines
    assert not stack.processes, "every process is forgotten once stopped"
