"""Checks that a service's HTTP errors all use the one envelope
{"error": {"status": <the HTTP status>, "message": "...", "field"?: "..."}}.

`check_error_envelopes(app, strong_key=..., weak_key=...)` walks the app's routes and asks
each one what a hostile or careless client would: no Authorization header, a malformed
one, an unknown key, a key without the scope or app (weak_key), a path parameter of the
wrong type, a body that is not JSON, a query value of the wrong type, an id that names
nothing; plus an unknown path and a wrong method. Every 4xx answer must be the envelope
(401s with WWW-Authenticate: Bearer). Only invalid requests go to routes that change
things, so it is safe on a live service.

`assert_error_envelopes(...)` also demands that 401, 403, 404 and 422 (or the statuses
given) were each seen at least once, so a check that reached no error cannot pass.

`challenges` names the WWW-Authenticate a 401 must carry under a path prefix where the
credential is not a Bearer key (e.g. a session-cookie API: {"/review/api/": ...}).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

OPS = {"/healthz", "/readyz", "/metrics"}
UNKNOWN_KEY = "lk_AAAAAAAAAAAA_" + "A" * 43


@dataclass
class EnvelopeReport:
    seen: Counter = field(default_factory=Counter)  # 4xx status -> answers checked
    failures: list[str] = field(default_factory=list)
    probes: int = 0


def _is_uuid(annotation: Any) -> bool:
    return annotation is uuid.UUID


def _fill(route: _Route, *, wrong_type: bool = False) -> tuple[str, bool]:
    """The route's path with each parameter filled; `wrong_type` puts text where an id or
    number goes. Returns (path, whether anything typed was filled wrongly)."""
    path, changed = route.path_format, False
    for param in route.dependant.path_params:
        annotation = param.field_info.annotation
        if annotation in (int, float) or _is_uuid(annotation):
            value = "not-a-valid-id" if wrong_type else (str(uuid.uuid4()) if _is_uuid(annotation) else "987654321")
            changed |= wrong_type
        else:
            value = f"no-such-{param.name}"
        path = path.replace("{" + param.name + "}", value)
    return path, changed


def _typed_query(route: _Route) -> dict[str, str]:
    return {p.alias: "not-a-number" for p in route.dependant.query_params
            if p.field_info.annotation in (int, float, bool)}


def _check_one(report: EnvelopeReport, what: str, response: httpx.Response, challenge: str = "Bearer") -> None:
    report.probes += 1
    status = response.status_code
    if not 400 <= status < 500:
        return
    report.seen[status] += 1
    try:
        body = response.json()
    except ValueError:
        report.failures.append(f"{what}: {status} is not JSON: {response.text[:120]!r}")
        return
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        report.failures.append(f"{what}: {status} body is not the envelope: {str(body)[:160]}")
        return
    if error.get("status") != status:
        report.failures.append(f"{what}: error.status {error.get('status')!r} != HTTP {status}")
    if not isinstance(error.get("message"), str) or not error["message"]:
        report.failures.append(f"{what}: error.message missing or empty")
    if "field" in error and not isinstance(error["field"], str):
        report.failures.append(f"{what}: error.field is not text: {error['field']!r}")
    if set(error) - {"status", "message", "field"}:
        report.failures.append(f"{what}: unexpected keys {sorted(set(error) - {'status', 'message', 'field'})}")
    if status == 401 and response.headers.get("www-authenticate", "").lower() != challenge.lower():
        report.failures.append(f"{what}: 401 without WWW-Authenticate: {challenge}")


@dataclass(frozen=True)
class _Route:
    path: str
    path_format: str
    methods: frozenset[str]
    dependant: Any


def _routes(app: FastAPI) -> list[_Route]:
    """The app's API routes with their full paths (FastAPI >= 0.120 includes routers lazily)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into app.routes
        contexts: list[Any] = list(app.routes)
        originals = contexts
    else:
        contexts = list(iter_route_contexts(app.routes))
        originals = [c.original_route for c in contexts]
    return [_Route(c.path, c.path_format, frozenset(c.methods or ()), o.dependant)
            for c, o in zip(contexts, originals, strict=True) if isinstance(o, APIRoute) and c.path not in OPS]


def check_error_envelopes(
    app: FastAPI, *, strong_key: str | None = None, weak_key: str | None = None, client: Any = None,
    challenges: Mapping[str, str] | None = None,
) -> EnvelopeReport:
    """Probe every route of `app` (through `client`, e.g. an httpx.Client on a live server;
    by default the app in-process without its lifespan). strong_key: a key with every scope
    on every app; weak_key: one that lacks a scope or app the routes need; challenges: path
    prefix -> the WWW-Authenticate of its 401s where that is not Bearer."""
    http = client or TestClient(app, raise_server_exceptions=False)
    report = EnvelopeReport()
    bearer = {"Authorization": f"Bearer {strong_key}"} if strong_key else {}
    for route in _routes(app):
        challenge = next((c for prefix, c in (challenges or {}).items() if route.path.startswith(prefix)), "Bearer")

        def _check(report: EnvelopeReport, what: str, response: httpx.Response, c: str = challenge) -> None:
            _check_one(report, what, response, c)

        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            path, _ = _fill(route)
            label = f"{method} {route.path}"
            send = lambda headers, p=path, m=method, **kw: http.request(m, p, headers=headers, **kw)  # noqa: E731
            _check(report, f"{label} without a key", send({}))
            _check(report, f"{label} with a malformed Authorization", send({"Authorization": "Basic Zm9vOmJhcg=="}))
            _check(report, f"{label} with an unknown key", send({"Authorization": f"Bearer {UNKNOWN_KEY}"}))
            if weak_key:
                _check(report, f"{label} with a weak key", send({"Authorization": f"Bearer {weak_key}"},
                                                                **({"json": {}} if method != "GET" else {})))
            if not strong_key:
                continue
            wrong, changed = _fill(route, wrong_type=True)
            if changed:
                _check(report, f"{label} with a malformed path id", http.request(method, wrong, headers=bearer))
            query = _typed_query(route)
            if query:
                _check(report, f"{label} with a malformed query", http.request(method, path, headers=bearer,
                                                                               params=query))
            if method != "GET":
                _check(report, f"{label} with a body that is not JSON", http.request(
                    method, path, headers={**bearer, "Content-Type": "application/json"}, content=b"{not json"))
            else:
                _check(report, f"{label} for something that does not exist", http.request(method, path,
                                                                                         headers=bearer))
    _check_one(report, "GET of an unknown path", http.request("GET", "/v1/no-such-route-here"))
    first = next(iter(_routes(app)), None)
    if first is not None:
        unused = next(m for m in ("PATCH", "PUT", "DELETE", "POST", "GET") if m not in first.methods)
        _check_one(report, f"{unused} {first.path} (a method it does not take)", http.request(unused, _fill(first)[0]))
    return report


def assert_error_envelopes(app: FastAPI, *, expect: Iterable[int] = (401, 403, 404, 422), **kwargs: Any) -> None:
    report = check_error_envelopes(app, **kwargs)
    assert not report.failures, "errors outside the envelope:\n" + "\n".join(report.failures)
    missing = sorted(set(expect) - set(report.seen))
    assert not missing, f"no {missing} answer was reached in {report.probes} probes (seen: {dict(report.seen)})"
