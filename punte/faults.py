"""Faults we can cause on a running Stack, for the chaos bench (bench/chaos.py) and tests:
a service killed with SIGKILL, the embedded broker paused and resumed or killed (its log
lost), one node of an Apache Kafka cluster paused or killed and started again, the
embedded PostgreSQL killed and started again. Each says what it did; none waits for recovery,
which is the supervisor's job (punte.stack) and what the caller checks."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from punte.stack import Stack


def kill_service(stack: Stack, name: str) -> int:
    """SIGKILL a service's process (and anything it started): no shutdown, no flush, as a
    crash or the kernel's OOM killer. Returns the pid killed."""
    process = stack.processes[name]
    if process.poll() is not None:
        raise RuntimeError(f"{name} is not running (exit {process.returncode})")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.pid


def pause_broker(stack: Stack) -> None:
    """SIGSTOP the embedded broker: connections stay open and nothing is answered."""
    if stack.broker is None:
        raise RuntimeError("the stack does not own its broker (PUNTE_KAFKA_BOOTSTRAP is set)")
    stack.broker.pause()


def resume_broker(stack: Stack) -> None:
    if stack.broker is None:
        raise RuntimeError("the stack does not own its broker (PUNTE_KAFKA_BOOTSTRAP is set)")
    stack.broker.resume()


@contextmanager
def broker_paused(stack: Stack, seconds: float | None = None) -> Iterator[None]:
    """The broker paused for the block (and ``seconds`` more, if given), resumed even if the
    block fails."""
    pause_broker(stack)
    try:
        yield
        if seconds:
            time.sleep(seconds)
    finally:
        resume_broker(stack)


def kill_broker(stack: Stack) -> int:
    """SIGKILL the embedded broker: its log, kept in memory, is lost with it. The supervisor
    starts a new, empty one and rebuilds it (decision 0026). Returns the pid killed."""
    if stack.broker is None or stack.broker.process is None:
        raise RuntimeError("the stack does not own its broker (PUNTE_KAFKA_BOOTSTRAP is set)")
    pid = stack.broker.process.pid
    stack.broker.kill()
    return pid


def restart_postgres(stack: Stack, hard: bool = True) -> None:
    """Kill the embedded PostgreSQL (SIGKILL to the postmaster when ``hard``, as a crash;
    SIGTERM otherwise) and start it again on the same port and data, under the supervisor's
    lock, so the supervisor neither races it nor counts it as a crash."""
    if stack.postgres is None:
        raise RuntimeError("the stack does not own its PostgreSQL (PUNTE_DATABASE_URL is set)")
    with stack.supervisor_lock:
        stack.postgres.restart(hard=hard)
        stack.supervisor_adopt("database")


def kill_postgres(stack: Stack) -> int:
    """SIGKILL the embedded PostgreSQL's postmaster alone, as a crash or the OOM killer
    would: its backends notice and exit, and the supervisor starts it again (crash recovery
    runs at its start). Unlike ``restart_postgres`` nothing here waits or restarts; returns
    the pid killed."""
    if stack.postgres is None or stack.postgres.process is None:
        raise RuntimeError("the stack does not own its PostgreSQL (PUNTE_DATABASE_URL is set)")
    process = stack.postgres.process
    if process.poll() is not None:
        raise RuntimeError(f"PostgreSQL is not running (exit {process.returncode})")
    os.kill(process.pid, signal.SIGKILL)
    return process.pid


def _cluster(stack: Stack):  # punte.apache_kafka.KafkaCluster
    if stack.kafka is None:
        raise RuntimeError("the stack does not run on Apache Kafka (broker_kind='kafka')")
    return stack.kafka


def pause_kafka_node(stack: Stack, node_id: int) -> int:
    """SIGSTOP one Kafka node (a hung broker); returns the pid paused."""
    return _cluster(stack).pause(node_id)


def resume_kafka_node(stack: Stack, node_id: int) -> None:
    _cluster(stack).resume(node_id)


def kill_kafka_node(stack: Stack, node_id: int) -> int:
    """SIGKILL one Kafka node, as a crash: its log stays on disk, the two others lead its
    partitions meanwhile (RF 3, min.insync.replicas 2). Returns the pid killed. On a cluster
    the stack owns, its supervisor starts the node again; the chaos bench gives the stack
    its cluster, so that the node stays down until ``restart_kafka_node``."""
    node = _cluster(stack).node(node_id)
    if node.process is None or node.process.poll() is not None:
        raise RuntimeError(f"Kafka node {node_id} is not running")
    pid = node.process.pid
    _cluster(stack).kill(node_id)
    return pid


def restart_kafka_node(stack: Stack, node_id: int, timeout: float = 120) -> None:
    """Start a killed Kafka node again on its ports and data; returns once every node
    names the whole cluster again. A node the stack's supervisor watches is restarted under
    its lock, so it neither races it nor counts it as a crash; any other without the lock,
    which would hold up the supervisor's restarts of services meanwhile."""
    cluster, name = _cluster(stack), f"kafka-{node_id}"
    if name not in stack.supervision():
        cluster.restart(node_id, timeout)
        return
    with stack.supervisor_lock:
        cluster.restart(node_id, timeout)
        stack.supervisor_adopt(name)
