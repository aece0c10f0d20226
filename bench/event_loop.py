"""The event loop a benchmark runs its own services' code on: the services' own, uvloop
(uvicorn picks it when it is installed, decision 0033), so that a bench of the audit's
appends or the reference pipeline's stages is not slower than the network would be for the
loop alone."""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # no uvloop where the services would have none either (Windows)
        return asyncio.run(main)
    return uvloop.run(main)
