"""Settings and the database engine: a service's own database on the configured server
keeps the server URL's options, and SQL parameters never reach an error text."""
from __future__ import annotations

import pytest

from runtime.db import connect_arguments, make_engine
from runtime.settings import Settings


@pytest.mark.parametrize("server, expected", [
    ("postgresql+asyncpg://punte:s%40cret@db.example:5432/postgres?ssl=require",
     "postgresql+asyncpg://punte:s%40cret@db.example:5432/punte_intake?ssl=require"),
    ("postgresql+asyncpg://punte@db.example:5432/postgres?ssl=verify-full&prepared_statement_cache_size=0",
     "postgresql+asyncpg://punte@db.example:5432/punte_intake?prepared_statement_cache_size=0&ssl=verify-full"),
    ("postgresql+asyncpg://punte@db.example:5432", "postgresql+asyncpg://punte@db.example:5432/punte_intake"),
])
def test_the_services_database_keeps_the_server_urls_options(server: str, expected: str):
    assert Settings(database_url=server).database_for("intake") == expected


def test_plain_driver_connections_get_the_same_tls_option_as_the_engine():
    url = Settings(database_url="postgresql+asyncpg://punte:s%40cret@db.example:5432/postgres?ssl=require"
                   ).database_for("intake")
    arguments = connect_arguments(url, database="postgres")
    assert arguments["ssl"] == "require" and arguments["password"] == "s@cret"
    assert arguments["database"] == "postgres" and arguments["host"] == "db.example"


def test_engines_keep_sql_parameters_out_of_error_texts():
    engine = make_engine("postgresql+asyncpg://punte@127.0.0.1:1/punte_intake")
    assert engine.sync_engine.hide_parameters


def test_the_ingress_message_limit_is_the_http_bodys_unless_set(monkeypatch):
    """One maximum on both paths by default (issue #16): 256 KiB over HTTP and Kafka."""
    assert Settings().ingress_window().max_bytes == Settings().http_max_body_bytes == 256 * 1024
    monkeypatch.setenv("PUNTE_INGRESS_MAX_MESSAGE_BYTES", "65536")
    assert Settings().ingress_window().max_bytes == 65536
