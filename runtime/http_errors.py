"""Every HTTP error of every service in the one refusal shape, and every service's OpenAPI
document saying so: `{"detail": {"code", "message_ro", "message_en"}}` with a code from
contracts/reference/rejection-codes.yaml, for 400, 401, 403, 404, 409, 413, 422, 429 and 503.

FastAPI's own request validation answers `{"detail": [...]}` with the input echoed back;
here it answers INVALID_REQUEST with where and what was wrong, never the input value (it
may be a child's CNP)."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from contracts.refusals import reason


class Reason(BaseModel):
    code: str
    message_ro: str
    message_en: str


class Problem(BaseModel):
    where: str
    problem: str


class InvalidReason(Reason):
    problems: list[Problem] = []


class Refusal(BaseModel):
    """The body of every refused HTTP request."""

    detail: Reason


class InvalidRequest(BaseModel):
    detail: InvalidReason


DESCRIPTIONS = {
    400: "Cerere greșită / bad request",
    401: "Fără token valid / no valid token (MISSING_TOKEN, INVALID_TOKEN)",
    403: "Nu aveți dreptul / not allowed (FORBIDDEN, NOT_CASE_LEAD, …)",
    404: "Inexistent sau inaccesibil / unknown or not yours to see",
    409: "Nu acum / not allowed in the current state",
    413: "Prea mare / too large (TOO_LARGE)",
    502: "Serviciul de identitate nu răspunde / the identity provider failed",
    422: "Cerere invalidă / invalid request (INVALID_REQUEST)",
    429: "Prea multe cereri / too many requests (RATE_LIMITED); see Retry-After",
    503: "Indisponibil temporar / temporarily unavailable",
}


def _statuses(method: str, path: str) -> list[int]:
    """The refusals an operation can give: every signed-in one 401/403/404 (what the asker
    takes no part in is unknown to it)/409 (a case whose processing is restricted refuses
    reads too: CASE_RESTRICTED)/413/422/429/503; one that changes state 400 as well."""
    found = [401, 403, 404, 409, 413, 422, 429, 503]
    if method in ("post", "put", "patch", "delete"):
        found += [400]
    return sorted(found)


# Public operations: a sign-in answers wrong credentials (401) and an unreachable issuer (502).
PUBLIC_STATUSES = {"get": [404, 422, 429, 503], "post": [400, 401, 413, 422, 429, 502, 503]}


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"where": ".".join(str(p) for p in error.get("loc", ())), "problem": str(error.get("msg", ""))}
                for error in exc.errors()][:20]
    detail = {**reason("INVALID_REQUEST", "; ".join(f"{p['where']}: {p['problem']}" for p in problems)[:500]),
              "problems": problems}
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI, public: frozenset[str] = frozenset()) -> None:
    """The refusal shape for validation errors, and in the OpenAPI document every operation's
    refusals (``public`` operations, "GET /health/live", only 422/429/503)."""
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes,
                               description=app.description)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (Refusal, InvalidRequest):
            for name, schema in model.model_json_schema(ref_template="#/components/schemas/{model}").get(
                    "$defs", {}).items():
                schemas[name] = schema
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.pop("$defs", None)
            schemas[model.__name__] = schema
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                wanted = (PUBLIC_STATUSES.get(method, [422, 429, 503]) if f"{method.upper()} {path}" in public
                          else _statuses(method, path))
                for status in wanted:
                    model = "InvalidRequest" if status == 422 else "Refusal"
                    given = responses.get(str(status))
                    if given is not None and "content" in given and "HTTPValidationError" not in str(given):
                        continue  # the operation documents its own body (e.g. intake's outcomes)
                    responses[str(status)] = {
                        "description": DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
                    }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
