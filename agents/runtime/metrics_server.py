"""Serve one daemon's metrics over HTTP for Prometheus to scrape.

prometheus-client's own server runs in a daemon thread; a scrape only reads plain numbers
the daemon keeps, so the thread never touches the asyncio loop. Each daemon has its own
``CollectorRegistry``, so several daemons (or tests) can share one process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger("micropay.metrics")


class MetricsPortError(Exception):
    """The metrics endpoint could not listen where it was asked to; the message says why."""


@dataclass
class MetricsServer:
    """A running endpoint: where it listens, and how to stop it."""

    host: str
    port: int
    _server: WSGIServer
    _thread: Thread

    @property
    def url(self) -> str:
        """The address a scraper reads."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop answering and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Listen on ``host:port``; a port in use (or any bind error) is a ``MetricsPortError``."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise MetricsPortError(
            f"cannot serve metrics on {host}:{port}: {error.strerror or error}"
        ) from error
    served = MetricsServer(host, server.server_port, server, thread)
    log.info("metrics served at %s", served.url)
    return served
