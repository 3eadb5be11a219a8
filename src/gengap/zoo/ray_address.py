"""Fail fast on a Ray address nobody answers at: ``ray.init`` retries a dead ``HOST:PORT`` for
minutes, printing warnings, before it gives up."""

from __future__ import annotations

import socket

from gengap.errors import GengapError

CONNECT_TIMEOUT_S = 5.0  # a cluster's head answers a TCP connection well within this


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line :class:`GengapError` when ``address`` is a ``HOST:PORT`` that does not
    accept a TCP connection within ``timeout`` seconds, or is not of that form. ``None`` (a local
    Ray), ``auto`` and ``local`` (Ray resolves those itself, failing at once when there is no
    cluster) and ``ray://`` client addresses (their own error when the client is missing) are
    left to Ray."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, port = split_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__  # a timeout has no strerror
        raise GengapError(
            f"ray: nothing answers at {address!r} ({reason}; waited {timeout:g} s)"
        ) from None


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` too) as its host and port number."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GengapError(
            f"ray: address {address!r} is not HOST:PORT, auto or ray://HOST:PORT"
        )
    return host, int(port)
