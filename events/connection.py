"""Opening a NATS connection: the identity and TLS the settings give, bounded first contact, secrets kept out of errors.

Publishes are never buffered while the connection is down (`pending_size=0`): a publish then
fails at once with BusUnavailable instead of going out, unannounced, after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.aio.client import Client

from .config import BusConfig
from .errors import BusUnavailable
from .secrets import secret_password

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """`url` with any password replaced: `nats://user:***@host:4222`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redact_text(text: str, urls: list[str]) -> str:
    """`text` with every URL in `urls` redacted (nats-py puts URLs in its messages)."""
    for url in urls:
        text = text.replace(url, redact_url(url))
    return text


def nats_options(settings: BusConfig) -> dict[str, Any]:
    """nats-py's options for the identity (credentials file, nkey, or user and password) and TLS the settings give."""
    options: dict[str, Any] = {}
    if settings.nats_creds:
        options["user_credentials"] = str(settings.nats_creds)
    if settings.nats_nkey_seed:
        options["nkeys_seed"] = str(settings.nats_nkey_seed)
    if settings.nats_user:
        options["user"] = settings.nats_user
        if settings.nats_password:
            options["password"] = settings.nats_password.get_secret_value()
        elif settings.nats_password_secret:
            options["password"] = secret_password(settings.nats_password_secret)
        else:
            options["password"] = ""
    if prefix := settings.inbox_prefix():
        options["inbox_prefix"] = prefix
    if settings.nats_tls_ca or settings.nats_tls_cert:
        tls = ssl.create_default_context(cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None)
        if settings.nats_tls_cert:
            tls.load_cert_chain(str(settings.nats_tls_cert), str(settings.nats_tls_key or settings.nats_tls_cert))
        options["tls"] = tls
    return options


async def open_connection(url: str, *, name: str, timeout_s: float, **options: Any) -> tuple[Client, asyncio.Event]:
    """Connect to NATS at `url` (several: comma-separated); BusUnavailable if it cannot within `timeout_s`.

    Returns the client and the event that, once set, silences the disconnect warnings (a close we asked for).
    `options` go to nats-py (identity, TLS); nothing secret ever appears in an error or log line.
    """
    closing = asyncio.Event()
    servers = [u.strip() for u in url.split(",") if u.strip()]
    shown = ", ".join(redact_url(u) for u in servers)

    async def _disconnected() -> None:
        if not closing.is_set():
            log.warning("disconnected from NATS at %s; reconnecting", shown)

    seen: list[str] = []

    async def _error(exc: Exception) -> None:
        seen.append(redact_text(str(exc) or type(exc).__name__, servers))
        if not closing.is_set():
            log.warning("NATS error: %s", seen[-1])

    nc = Client()
    try:
        # Once connected, reconnect forever (a NATS restart mid-job must not kill a worker);
        # the first connection, though, is bounded so a wrong URL fails fast instead of hanging.
        behaviour: dict[str, Any] = {
            "connect_timeout": min(timeout_s, 2.0),  # nats-py takes seconds as floats, whatever its hints say
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            # No buffer while disconnected: a publish fails now rather than going out later,
            # after its caller was told it failed (and may have sent it again).
            "pending_size": 0,
        }
        connect = nc.connect(servers, name=name, disconnected_cb=_disconnected, error_cb=_error, **behaviour, **options)
        try:
            await asyncio.wait_for(connect, timeout_s)
        except BaseException:
            # nats-py leaves the socket of an attempt cut short (our timeout, a cancel) open: close it
            # now, on its own loop, or the collector finalizes it later inside whatever code runs then.
            closing.set()
            await _abandon(nc)
            raise
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        # A refusal of the credentials is the cause, whatever came last (a server that refuses
        # may also reset the socket mid-handshake): name it, since retrying will not help.
        refused = [e for e in seen if "authorization" in e.lower()]
        last = redact_text(str(exc), servers) or (seen[-1] if seen else type(exc).__name__)
        why = refused[-1] if refused else last
        raise BusUnavailable(f"cannot reach NATS at {shown}: {why}") from exc
    return nc, closing


async def _abandon(nc: Client) -> None:
    """Close a client whose first connection failed: its socket and tasks; nothing it raises matters now."""
    try:
        await asyncio.shield(nc.close())
    except Exception:  # the connect's own error is the one to report
        log.debug("closing an unconnected NATS client failed", exc_info=True)
