"""Where a target's key may go, and which addresses a provider-named URL may reach.

Two rules, one per threat:

* **Credentials go only to their own origins.** An origin is scheme, host and port (RFC 6454). A target's
  credential origins are its configured base URL's origin, the origins its protocol documents as the same
  service (fal: the queue host ``queue.fal.run`` and the synchronous host ``fal.run``, per
  https://docs.fal.ai/model-apis/model-endpoints/queue), and any the target lists in ``credential_origins``.
  A redirect elsewhere, or from https to http, loses every credential header (httpx itself strips only
  ``Authorization``: https://www.python-httpx.org/compatibility/ ); a URL the provider names (a status URL, a
  prediction URL) is called with the key only when it is on a credential origin.
* **Provider-named URLs reach only public addresses.** A URL an answer names (an image to download, a
  redirect) may only be ``http``/``https``, and a new connection to a host that is not one of the target's
  own is made only to an address that is public: not loopback, private (RFC 1918, RFC 4193), link-local
  (RFC 3927, which holds cloud metadata services at 169.254.169.254), shared (RFC 6598), multicast,
  unspecified or reserved. The name is resolved once, every address is checked, and the connection is opened
  to the checked address itself (TLS still verifies the name), so a DNS answer that changes between check and
  connect (rebinding) cannot pass. A target marked ``allow_private_network`` (automatically: one whose base
  URL is itself on this machine or a private network, such as the sandbox or a local gateway) skips the check.

The policy in force is carried by a context variable set while an adapter runs (see
:meth:`harness.providers.base.Provider.generate`), so the network backend of a shared client pool applies
the right target's rules to each connection it opens.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "x-goog-api-key", "x-api-key", "api-key",
                                "cookie"})
"""Header names dropped on a redirect to a foreign origin whatever the protocol declares (lower case)."""
ALLOWED_SCHEMES = ("http", "https")


class Origin(NamedTuple):
    """Scheme, lower-case host and port (default port filled in)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = DEFAULT_PORTS.get(self.scheme)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def origin_of(url: str | httpx.URL) -> Origin | None:
    """The origin of an absolute http(s) URL; ``None`` for anything else (relative, ``file:``, ``data:``)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        return None
    return Origin(scheme, parsed.host.lower().rstrip("."), parsed.port or DEFAULT_PORTS[scheme])


class RefusedURL(Exception):
    """A provider-named URL or address the policy does not allow; ``reason`` says which rule refused it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a public unicast address (``None`` when it is)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (("loopback", ip.is_loopback), ("unspecified", ip.is_unspecified), ("link-local", ip.is_link_local),
              ("multicast", ip.is_multicast), ("reserved", ip.is_reserved), ("private", ip.is_private))
    for name, hit in checks:
        if hit:
            return f"{name} address"
    if not ip.is_global:
        return "non-public address"
    return None


def is_local_host(host: str) -> bool:
    """Whether a configured host names this machine or a private network (``localhost``, 127.0.0.1, 10.x …)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return address_problem(host) is not None


@dataclass(frozen=True)
class OriginPolicy:
    """One target's rules: the origins that may receive its key, the headers that carry it, and whether
    provider-named URLs may reach private addresses."""

    credential_origins: frozenset[Origin]
    credential_headers: frozenset[str] = CREDENTIAL_HEADERS
    allow_private_network: bool = False
    trusted_hosts: frozenset[tuple[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_hosts", frozenset((o.host, o.port) for o in self.credential_origins))
        object.__setattr__(self, "credential_headers",
                           frozenset(h.lower() for h in self.credential_headers) | CREDENTIAL_HEADERS)

    @classmethod
    def for_urls(cls, urls: Iterable[str], *, credential_headers: Iterable[str] = (),
                 allow_private_network: bool | None = None) -> OriginPolicy:
        """The policy for a target whose credential origins are those of ``urls`` (the base URL first).

        ``allow_private_network=None`` decides automatically: allowed when the base URL's host is this machine
        or a private address (the sandbox, a local gateway), refused otherwise."""
        origins = [o for o in (origin_of(u) for u in urls) if o is not None]
        if allow_private_network is None:
            allow_private_network = bool(origins) and is_local_host(origins[0].host)
        return cls(frozenset(origins), frozenset(credential_headers), allow_private_network)

    def may_send_credentials(self, url: str | httpx.URL) -> bool:
        """Whether a request to ``url`` may carry the key: its origin is one of the credential origins."""
        origin = origin_of(url)
        return origin is not None and origin in self.credential_origins

    def describe_origins(self) -> str:
        return ", ".join(sorted(str(o) for o in self.credential_origins)) or "(none)"

    def check_url(self, url: str, what: str) -> None:
        """Refuse a provider-named URL whose scheme is not http(s); the address is checked on connect."""
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ALLOWED_SCHEMES or origin_of(url) is None:
            shown = url if len(url) <= 80 else url[:79] + "…"
            raise RefusedURL(f"{what} has an unsupported URL {shown!r}: only http and https are fetched")

    def trusts(self, host: str, port: int) -> bool:
        """Whether a new connection to ``host:port`` skips the address check: a host of a credential origin
        (configured by the user), or any host for a target allowed on private networks."""
        return self.allow_private_network or (host.lower().rstrip("."), port) in self.trusted_hosts


def redirect_keeps_credentials(policy: OriginPolicy | None, source: httpx.URL, target: httpx.URL) -> bool:
    """Whether a redirect from ``source`` to ``target`` may keep the credential headers: the target is on a
    credential origin of the policy in force, or (no policy) has the same origin as the source. A change from
    https to http never keeps them."""
    if source.scheme == "https" and target.scheme != "https":
        return False
    if policy is not None:
        return policy.may_send_credentials(target)
    return origin_of(source) == origin_of(target) and origin_of(target) is not None


_current: contextvars.ContextVar[OriginPolicy | None] = contextvars.ContextVar("harness_origin_policy", default=None)


def current_policy() -> OriginPolicy | None:
    """The policy of the adapter running in this task, or ``None`` outside one."""
    return _current.get()


def use_policy(policy: OriginPolicy | None) -> contextvars.Token[OriginPolicy | None]:
    """Make ``policy`` the one in force for this task (and tasks it starts); pass the token to :func:`reset`."""
    return _current.set(policy)


def reset_policy(token: contextvars.Token[OriginPolicy | None]) -> None:
    _current.reset(token)


async def resolve_public(host: str, port: int) -> list[str]:
    """Resolve ``host`` once and return its addresses, refusing (:class:`RefusedURL`) when any is not public.

    Refusing on *any* non-public answer (not only the first) means a DNS reply mixing a public and a private
    address cannot steer the connection to the private one. A failed lookup raises ``OSError`` (a connection
    failure, which may clear with time, not a refusal)."""
    import asyncio

    try:
        ipaddress.ip_address(host.strip("[]"))
        addresses = [host.strip("[]")]
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            raise RefusedURL(
                f"refused to connect to {host}:{port}: it resolves to {address}, a {problem}; a URL named by the "
                "provider may only reach public addresses (set allow_private_network: true on the target if it "
                "is your own network)")
    if not addresses:
        raise OSError(f"{host} resolved to no address")
    return addresses
