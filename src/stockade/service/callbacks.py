"""Callbacks: PUT the finished submission to its `callback_url`, off the
workers, a few tries, a timeout per try.

Judge0's CVE-2024-29021 was a server reaching its own internal network on a
user's behalf. A callback target is therefore resolved, every address checked
(loopback, private, link-local, cloud metadata, multicast, reserved: refused
unless an operator allowed that network), and the request then goes to the
checked address itself, so a DNS answer that changes between check and connect
(rebinding) cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from stockade.service.store import Row, Store, first_line

log = logging.getLogger("stockade.callbacks")

# Callbacks left pending by a previous run of the service, delivered at once at
# most (see Callbacks.resume).
RESUMED_AT_ONCE = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services that hide in ranges Python does not call private.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack (also link-local)
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (carrier-grade NAT range)
    ipaddress.ip_address("192.0.0.192"),  # Oracle Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
}
RESOLVE_TIMEOUT = 3.0
# getaddrinfo blocks a thread for as long as the name's DNS servers take, which
# its owner decides (RESOLVE_TIMEOUT stops our wait, not the thread). On the
# loop's default executor, a few dozen callback URLs naming slow hosts left no
# thread for the compile cache (asyncio.to_thread), so compiled runs stalled:
# lookups get threads of their own.
_LOOKUPS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="callback-lookup")


class RefusedTarget(ValueError):
    """The callback URL may not be called (bad URL, unresolvable, or internal)."""


def is_internal(address: IPAddress) -> bool:
    """Whether an address belongs to the host or its private networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address in _METADATA
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


async def resolve_target(url: str, allowed: Sequence[IPNetwork]) -> list[IPAddress]:
    """Every address the URL's host resolves to, if all of them may be called.
    Raises RefusedTarget naming the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RefusedTarget("is not a valid URL") from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedTarget("is not a valid URL")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        named = False
    except ValueError:
        addresses = await _resolve(host, port)
        named = True
    for address in addresses:
        if is_internal(address) and not any(address in network for network in allowed):
            # A name's address is not said: through our resolver, the client
            # would learn the internal address of any internal name it guesses.
            shown = "" if named else f" ({address})"
            raise RefusedTarget(f"points to an internal address{shown}, which is not allowed")
    return addresses


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(
                _LOOKUPS, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)),
            RESOLVE_TIMEOUT,
        )
    except (OSError, TimeoutError, UnicodeError):
        raise RefusedTarget(f"host {host} cannot be resolved") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RefusedTarget(f"host {host} cannot be resolved")
    return addresses


def _pinned(url: str, address: IPAddress) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL rewritten to the checked address, the Host header and TLS name to keep."""
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    name = parts.netloc.rsplit("@", 1)[-1]
    tls_name = parts.hostname
    if not name.isascii():
        # A header is ASCII: an international name goes as the resolver looked
        # it up (IDNA); as given, httpx refused it and the delivery died.
        tls_name = parts.hostname.encode("idna").decode("ascii")
        name = tls_name + (f":{parts.port}" if parts.port else "")
    headers = {"Host": name}
    extensions = {"sni_hostname": tls_name} if parts.scheme == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), headers, extensions


def _origin(url: str) -> str:
    """scheme://host[:port] of a callback URL, for the log: its path, query
    and user info are the client's, and often a secret (a webhook's key)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    except ValueError:
        return "?"


class Callbacks:
    """Delivers callbacks in background tasks it owns (cancelled on close; the
    store's callback_pending flag makes a restart deliver what was cut short)."""

    def __init__(
        self,
        store: Store,
        render: Callable[[Row], Awaitable[bytes]],  # the JSON body to PUT
        *,
        tries: int,
        timeout: float,
        allowed: Sequence[IPNetwork],
    ):
        self.store = store
        self.render = render
        self.tries = tries
        self.timeout = timeout
        self.allowed = list(allowed)
        self._tasks: set[asyncio.Task] = set()
        # No bound on connections: httpx's 100 were shared by every target, so
        # about 7 submissions a second whose targets never answer (each holds
        # one for up to `tries` timeouts) kept them all, and everyone else's
        # callbacks failed waiting for one. How many can be open is bounded by
        # how fast runs finish (each a callback at most) times a delivery's
        # longest time, and the server raises its descriptor limit at start.
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout,
                                         limits=httpx.Limits(max_connections=None, max_keepalive_connections=20))

    def schedule(self, row: Row) -> None:
        """Start delivering one finished submission (returns at once)."""
        if not row.get("callback_url"):
            return
        task = asyncio.get_running_loop().create_task(self._deliver(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """Start delivering, in the background, the callbacks a previous run of
        the service did not finish, RESUMED_AT_ONCE at a time, each row read when
        its turn comes. (All at once, after a crash with thousands pending,
        held every row, outputs of megabytes each, and a connection per row.)"""
        tokens = await self.store.pending_callbacks()
        if not tokens:
            return
        remaining = iter(tokens)

        async def deliver_in_turn() -> None:
            for token in remaining:
                try:
                    row = await self.store.get(token)
                    if row is not None and row["callback_pending"]:
                        await self._deliver(row)
                except asyncio.CancelledError:
                    raise
                except Exception:  # (the store failed: still pending, for the next start)
                    log.exception("callback for %s not resumed", token)

        for _ in range(min(RESUMED_AT_ONCE, len(tokens))):
            task = asyncio.get_running_loop().create_task(deliver_in_turn())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: Row) -> None:
        url = row["callback_url"]
        body = await self.render(row)
        for attempt in range(1, self.tries + 1):
            try:
                addresses = await resolve_target(url, self.allowed)
            except RefusedTarget as exc:
                log.warning("callback for %s to %s refused: %s", row["token"], _origin(url), exc)
                break
            try:
                target, headers, extensions = _pinned(url, addresses[0])
                headers["Content-Type"] = "application/json"
                # The timeout is the whole try's: httpx's own is per operation,
                # so a target that sends a byte now and then never timed out.
                async with asyncio.timeout(self.timeout):
                    request = self._client.build_request("PUT", target, content=body, headers=headers,
                                                         extensions=extensions)
                    # Only the status counts: the answer's body is never read. Read
                    # whole, a target sending gigabytes fast held them all in memory.
                    response = await self._client.send(request, stream=True)
                    await response.aclose()
                if response.status_code < 500:
                    break
                failure = f"HTTP {response.status_code}"
            except (TimeoutError, httpx.TimeoutException):
                failure = f"no answer within {self.timeout:g} s"
            except httpx.HTTPError as exc:
                failure = str(exc) or type(exc).__name__
            except Exception:
                # Anything else ends this callback here. Escaping, it ended the
                # task before callback_done: the submission stayed pending, and
                # every start of the service tried it again, and failed again.
                log.exception("callback for %s failed", row["token"])
                break
            if attempt < self.tries:
                log.info("callback for %s failed (try %d): %s", row["token"], attempt, failure)
                await asyncio.sleep(0.2 * attempt)
            else:  # (a warning: the client will never hear of this submission's end)
                log.warning("callback for %s to %s given up after %d tries: %s", row["token"], _origin(url),
                            attempt, failure)
        try:
            await self.store.callback_done(row["token"])
        except Exception as exc:  # (a full disk): still pending, so the next start sends it again
            log.error("callback for %s ended, but could not be recorded (sent again at the next start): %s",
                      row["token"], first_line(exc))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
