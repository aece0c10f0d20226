"""How a process serves its HTTP app with uvicorn: on the listening socket the process that
started it handed down (PUNTE_HTTP_SOCKET_FD), or on its own host and port.

The embedded network's stack chooses each process's port and holds it from that moment
(punte.embedded.HeldPort). A port chosen, let go and bound again seconds later by the
starting process could meanwhile go to another socket: the process then failed its start
("exited with 3", uvicorn's start-up failure), at the network's start or at a restart."""
from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

SOCKET_FD_VARIABLE = "PUNTE_HTTP_SOCKET_FD"


def run(app: Any, host: str, port: int, socket_fd: int | None = None, **options: Any) -> None:
    """``uvicorn.run`` for one process, on the inherited socket ``socket_fd`` when given (its
    family read from the descriptor, so a TCP socket stays TCP: no delay, peer addresses)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    sockets = [socket.socket(fileno=socket_fd)] if socket_fd is not None else None
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
