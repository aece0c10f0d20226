"""The e2e leak scan finds a synthetic child's CNP, name and story wherever they hide (in
clear, in base64, in bytea) and is not fooled by digests, trace ids and pseudonyms."""
import base64
import json

from tests.e2e.leak_scan import _cell, leaks

REPORT = json.dumps({"child": {"cnp": "6160514041231", "given_name": "Maria"}, "description": "Date sintetice."})


def test_a_report_is_found_in_clear_and_inside_base64() -> None:
    assert len(leaks("t", REPORT)) == 3
    encoded = base64.b64encode(REPORT.encode()).decode()
    assert {leak.split(" in ")[0] for leak in leaks("t", f'{{"value": "{encoded}"}}')} == {
        "a CNP", "a child's name", "a report's description"}


def test_digests_trace_ids_and_pseudonyms_are_not_cnps() -> None:
    harmless = ('{"value_sha256": "bff7e1dfea8003f2da8feef44743015bb91d1e2051212090002a13e83e0e5b1f", '
                '"traceparent": "00-caaf2bc44ac7196511454148d6eb151f-9ac9efd8c266e89f-03", '
                '"child_ref": "ch-cb1220408872898f0123456789abcdef", "timestamp_ms": 1764440000000}')
    assert leaks("t", harmless) == []


def test_a_name_in_random_bytes_is_noise_and_text_stored_in_binary_is_not() -> None:
    """Ciphertext holds short runs of letters by chance (a 300 KiB sealed message held
    " Ana:"); text stored inside a binary value comes in long runs and is still found."""
    noise = bytes(range(128, 256)) * 4
    assert not leaks("a sealed value", _cell(noise + b" Ana: " + noise))
    stored = noise + '{"given_name": "Ana", "family_name": "Probescu"}'.encode() + noise
    assert leaks("a binary value", _cell(stored))
    assert leaks("a text value", _cell('{"given_name": "Ana"}'.encode()))
