"""Every service's API against its own OpenAPI document, with generated requests
(schemathesis): no 5xx, every status one the document declares, every body (refusals
included) of the declared shape. A signed-in principal of its own (not one the other
end-to-end tests use) so that what it changes disturbs nothing else."""
from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from punte.stack import SERVICES, Stack
from tests.e2e.test_access_matrix import bearer, minter

pytestmark = pytest.mark.e2e

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = int(os.environ.get("PUNTE_API_EXAMPLES", "12"))
# Who calls each service: a person of the DGASPC; the audit's API is the auditors'.
CALLER = {"audit": (None, "auditor")}
# The live stream never ends: its access is in the matrix, its body is text/event-stream.
SKIP = {("notification", "GET", "/inbox/stream")}


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_makes_a_service_fail_or_break_its_contract(network: Stack, service: str):
    issuer = minter(network)
    institution, role = CALLER.get(service, ("dgaspc-bc", "case-manager"))
    # Its own person: what it changes (preferences, notes) touches no one the other tests use.
    headers = bearer(issuer, institution, role, subject=f"schemathesis.{service}")
    base = network.url(service)
    document = httpx.get(f"{base}/openapi.json", headers=bearer(issuer, None, "operator"), timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:
        if (service, operation.method.upper(), operation.path) in SKIP:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=10)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
