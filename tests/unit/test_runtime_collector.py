"""runtime.collector: once settled, the collector leaves start-up's objects alone and
collects young objects every ``young_threshold`` allocations, not every 700; garbage
cycles are still collected, and every collection is counted and timed. Each case runs in
a fresh interpreter: freezing is for the life of a process, and the test run's own must
stay as it is."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str, prelude: str = "") -> dict:
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


# What a service's batch leaves alive for a while: 5 000 containers, then freed.
BATCH = """
def batch():
    kept = [{"n": i, "headers": [("ce_id", str(i))]} for i in range(1_000)]
    return len(kept)
"""


def test_a_settled_collector_walks_no_start_up_object_and_collects_young_ones_rarely():
    found = run(prelude=BATCH, code="""
        import gc, json
        from runtime import collector
        start_up = [[i] for i in range(50_000)]  # what imports and the app leave
        collector.settle(20_000)
        for _ in range(50):
            batch()
        print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                          "collections": collector.CLOCK.collections, "tracked": len(gc.get_objects())}))
    """)
    assert found["frozen"] >= 50_000
    assert found["threshold"][0] == 20_000
    # 50 batches of 3 000 containers each, all freed by reference counting: no collection
    # at all, where Python's default threshold collects the young generation every 700.
    assert found["collections"] == [0, 0, 0]
    assert found["tracked"] < 10_000  # the full collections' walk: not start-up's objects


def test_the_same_work_with_python_defaults_collects_all_the_time():
    # The test above's contrast: what the services did before the collector was settled.
    found = run(prelude=BATCH, code="""
        import gc, json
        from runtime.collector import CLOCK
        start_up = [[i] for i in range(50_000)]
        gc.callbacks.append(CLOCK)
        for _ in range(50):
            batch()
        print(json.dumps({"frozen": gc.get_freeze_count(), "collections": CLOCK.collections}))
    """)
    assert found["frozen"] == 0
    assert found["collections"][0] > 50


def test_garbage_cycles_are_still_collected_and_every_collection_is_timed():
    found = run("""
        import gc, json, weakref
        from runtime import collector
        collector.settle(1_000)

        class Node:
            pass

        made = []
        for _ in range(2_000):  # cycles only the collector frees
            a, b = Node(), Node()
            a.other, b.other = b, a
            made.append(weakref.ref(a))
            del a, b
        # Before any collection asked for: what the collector's own young passes freed.
        unfreed = sum(r() is not None for r in made)
        gc.collect()
        print(json.dumps({"unfreed": unfreed, "alive": sum(r() is not None for r in made),
                          "collections": collector.CLOCK.collections, "seconds": collector.CLOCK.seconds}))
    """)
    # 2 000 cycles are 8 000 containers (two nodes and their dicts each): at a threshold of
    # 1 000 the collector freed all but the last few hundred on its own (none, disabled).
    assert found["unfreed"] < 500
    assert found["alive"] == 0
    assert found["collections"][0] >= 1 and found["collections"][2] >= 1
    assert all(s >= 0 for s in found["seconds"]) and sum(found["seconds"]) > 0
