"""How long each consumer lets the broker hold its fetches, and how many messages it applies
at once (decision 0033): the consumers a report passes through wait little while records
come and longer once none come, and take smaller batches; background consumers (the audit
trail, closures, commands), which nobody waits on, wait longer still once quiet, since their
fetches of every partition were most of an idle network's CPU."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from runtime.service import Runtime
from runtime.settings import Settings
from runtime.signing import Keyring


def runtime(settings: Settings) -> Runtime:
    return Runtime(name="audit", settings=settings, engine=None, sessions=None, producer=None,  # type: ignore[arg-type]
                   relay=SimpleNamespace(wake=lambda: None), verifier=None, network_key=None,  # type: ignore[arg-type]
                   keyring=Keyring([]))


async def _handler(uow, message) -> None:
    return None


def test_report_path_and_background_consumers_wait_by_role():
    rt = runtime(Settings())
    on_path = rt.consumer(group_id="g1", topics=["punte.cases"], handler=_handler)
    background = rt.consumer(group_id="g2", topics=["punte.cases"], handler=_handler, background=True)
    assert (on_path._pace.busy_ms, on_path._pace.idle_ms) == (50, 1000)
    assert (background._pace.busy_ms, background._pace.idle_ms) == (1000, 3000)


def test_a_background_consumer_asks_for_a_batch_s_worth_while_busy_and_one_byte_once_quiet():
    """Step 40: the broker holds a background consumer's fetch until 128 KiB are new (or the
    wait ends), so it takes one batch a wait; a report's consumer is answered at once."""
    rt = runtime(Settings())
    on_path = rt.consumer(group_id="g1", topics=["punte.cases"], handler=_handler)
    background = rt.consumer(group_id="g2", topics=["punte.cases"], handler=_handler, background=True)
    assert on_path._pace.busy_min_bytes == 1
    assert background._pace.busy_min_bytes == 131072
    assert background._pace.min_bytes(1000) == 131072, "busy: a batch's worth"
    assert background._pace.min_bytes(3000) == 1, "quiet: the first record is answered at once"
    rt = runtime(Settings(kafka_fetch_min_bytes_background=4096))
    assert rt.consumer(group_id="g3", topics=["punte.cases"], handler=_handler,
                       background=True)._pace.busy_min_bytes == 4096


def test_a_minimum_below_one_byte_or_a_negative_gather_is_refused_at_start():
    with pytest.raises(ValidationError, match="kafka_fetch_min_bytes_background"):
        Settings(kafka_fetch_min_bytes_background=0)
    with pytest.raises(ValidationError, match="poll_gather_seconds"):
        Settings(poll_gather_seconds=-1)


def test_the_quiet_wait_is_a_setting():
    rt = runtime(Settings(kafka_fetch_max_wait_quiet_ms=5000, kafka_fetch_max_wait_background_ms=800))
    background = rt.consumer(group_id="g", topics=["punte.cases"], handler=_handler, background=True)
    assert (background._pace.busy_ms, background._pace.idle_ms) == (800, 5000)


def test_report_path_consumers_take_smaller_batches_than_background_ones():
    """A report's transaction ends sooner, and intake holds a smaller working set, with
    batches of 250; the audit trail appends faster with 500 (bench/README.md, step 31)."""
    rt = runtime(Settings())
    on_path = rt.consumer(group_id="g1", topics=["punte.cases"], handler=_handler)
    background = rt.consumer(group_id="g2", topics=["punte.cases"], handler=_handler, background=True)
    assert (on_path._batch_max, background._batch_max) == (250, 500)
    rt = runtime(Settings(consumer_batch_max=40, consumer_batch_max_background=90))
    assert rt.consumer(group_id="g3", topics=["punte.cases"], handler=_handler)._batch_max == 40
    assert rt.consumer(group_id="g4", topics=["punte.cases"], handler=_handler, background=True)._batch_max == 90
