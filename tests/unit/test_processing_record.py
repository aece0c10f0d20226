"""The record of processing (GDPR art. 30) is generated from the contracts: every event type
a topic carries has a record of the personal data in it, and the committed document is
what the contracts say today."""
import re
from pathlib import Path

from contracts.processing import event_types, problems, processing, record

RECORD = Path(__file__).resolve().parents[2] / "docs" / "privacy" / "record-of-processing.md"


def test_every_event_type_of_every_topic_has_a_record_of_the_data_it_carries() -> None:
    assert problems() == []
    assert set(processing()["events"]) == set(event_types())


def test_the_committed_record_is_the_generated_one() -> None:
    assert RECORD.read_text(encoding="utf-8") == record(), "run `punte privacy record --write`"


def test_the_record_names_each_topic_its_readers_and_the_retention_periods() -> None:
    text = record()
    assert "| `punte.delivery.{institution}` |" in text
    assert "risk (need-to-know)" in text
    assert "| Ingress topics on the broker | 7 days |" in text


DPIA = RECORD.parent / "dpia.md"
NAMED_TEST = re.compile(r"`(?:(tests/[\w/]+\.py)|(test_\w+\.py))?::(test_\w+)`")


def test_every_test_the_dpia_names_exists() -> None:
    """Each control of the DPIA names the test that proves it; a renamed or deleted test
    must not leave a control claimed without proof."""
    root = RECORD.parents[2]
    text = DPIA.read_text(encoding="utf-8")
    named = 0
    current: Path | None = None
    for match in NAMED_TEST.finditer(text):
        full, short, test = match.groups()
        if full:
            current = root / full
        elif short:
            current = next(root.glob(f"tests/*/{short}"))
        assert current is not None and current.is_file(), match.group(0)
        assert re.search(rf"def {test}\(", current.read_text(encoding="utf-8")), f"{current.name} has no {test}"
        named += 1
    assert named >= 15
    for path in re.findall(r"`(tests/[\w/]+\.py)`", text):
        assert (root / path).is_file(), path
