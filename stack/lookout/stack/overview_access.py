"""Who may read the overview, which apps they see, and which Host names it answers to.

A viewer is an API key with the read scope (`Authorization: Bearer lk_...`) or a reviewer
signed in to the review UI (its session cookie, verified by the feedback service's own
Accounts.session). A key bound to one app, or a reviewer assigned some apps, sees only
those apps' rows.

The Host check stops DNS rebinding: a page on evil.example whose name is made to resolve to
127.0.0.1 reaches this port from the user's own browser, same-origin to itself, and sends
`Host: evil.example`. So the overview answers only to names that cannot be rebound that way:
localhost names, IP literals (an address is its own origin), the host the stack binds, and
the names in LOOKOUT_OVERVIEW_ALLOWED_HOSTS (a proxy's name, say). The port plays no part:
a rebinding page already uses the right one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookout.core.api_errors import CHALLENGE, ApiError, bearer_key, require
from lookout.core.auth import ALL_APPS, ApiKeyStore

# The review UI's session cookie (lookout.feedback.review.COOKIE; the stack does not depend
# on the feedback package, so the name is repeated here and a test keeps them equal).
REVIEW_COOKIE = "lookout_review"
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
_LOCALHOST = ("localhost", "localhost.localdomain")


class OverviewSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    overview_allowed_hosts: str = Field(
        default="",
        description="Host names the overview (/ and /overview/*) answers to besides localhost, IP addresses and "
        "the bound host, comma separated (e.g. a proxy's name). Others get 421: a DNS-rebinding page cannot read it.",
    )

    def allowed_names(self) -> set[str]:
        return {n.strip().lower().rstrip(".") for n in self.overview_allowed_hosts.split(",") if n.strip()}


class _Reviewer(Protocol):
    @property
    def username(self) -> str: ...

    def app_scope(self) -> tuple[str, ...] | None: ...


# Accounts.session of the feedback service: (session, reviewer) for a live cookie, else None.
SessionLookup = Callable[[str], "tuple[object, _Reviewer] | None"]


@dataclass(frozen=True)
class Viewer:
    name: str
    via: Literal["key", "session"]
    apps: frozenset[str] | None  # None: every app

    def to_json(self) -> dict:
        return {"name": self.name, "via": self.via, "apps": None if self.apps is None else sorted(self.apps)}


async def viewer_of(request: Request, keys: ApiKeyStore, sessions: SessionLookup | None) -> Viewer:
    """The viewer a request comes from, or a 401/403 saying why not. A request with an
    Authorization header is judged by it alone: a bad key is not rescued by a cookie."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        key = await bearer_key(keys, authorization)
        require(key, "read")
        apps = None if key.app_id == ALL_APPS else frozenset({key.app_id})
        return Viewer(f"key {key.key_id}" + (f" ({key.name})" if key.name else ""), "key", apps)
    cookie = request.cookies.get(REVIEW_COOKIE)
    if cookie and sessions is not None:
        found = await run_in_threadpool(sessions, cookie)
        if found is not None:
            reviewer = found[1]
            scope = reviewer.app_scope()
            return Viewer(reviewer.username, "session", None if scope is None else frozenset(scope))
        raise ApiError(401, "the review session has ended: sign in again", headers=CHALLENGE)
    how = "sign in to the review UI or send " if sessions is not None else "send "
    raise ApiError(401, f"the overview needs a viewer: {how}Authorization: Bearer <key with the read scope>",
                   headers=CHALLENGE)


def host_check(bound_host: str, extra: Iterable[str]) -> Callable[[Request], None]:
    names = set(_LOCALHOST) | {n.lower().rstrip(".") for n in extra}
    if _HOST_NAME.match(bound_host.lower()):
        names.add(bound_host.lower())

    def check(request: Request) -> None:
        name = host_name(request.headers.get("host"))
        if name is None:
            raise ApiError(400, "missing or malformed Host header", field="host")
        if name in names or name.endswith(".localhost") or _is_ip(name):
            return
        raise ApiError(421, f"this server does not answer to the host name {name[:80]!r}; add it to "
                       "LOOKOUT_OVERVIEW_ALLOWED_HOSTS if it is yours", field="host")

    return check


def host_name(header: str | None) -> str | None:
    """The name (or address) of a Host header, lowercased, port and trailing dot removed;
    None when it is missing or malformed."""
    if not header or len(header) > 300:
        return None
    header = header.strip().lower()
    if header.startswith("["):  # [v6]:port
        end = header.find("]")
        if end == -1 or (header[end + 1:] and not re.fullmatch(r":\d{1,5}", header[end + 1:])):
            return None
        name = header[1:end]
        return name if _is_ip(name) else None
    name, sep, port = header.partition(":")
    if sep and not re.fullmatch(r"\d{1,5}", port):
        return None
    name = name.rstrip(".")
    return name if _HOST_NAME.match(name) or _is_ip(name) else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
