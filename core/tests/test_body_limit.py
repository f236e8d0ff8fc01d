"""The one request-body limit: a body over its route's limit gets a 413 in the standard
error format before the route authenticates or parses anything, whether the client
declared its length or streamed it chunked; bodies within the limit arrive unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, Request

from lookout.core.api_errors import ApiError, install_error_handlers
from lookout.core.body_limit import install_body_limit
from lookout.core.settings import CommonSettings
from lookout.testing.http import serve

LIMIT = 4096


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    """A body httpx sends chunked, without Content-Length."""
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


@pytest.fixture(scope="module")
def app_url():
    app = FastAPI()
    install_error_handlers(app)
    install_body_limit(app, CommonSettings(max_request_body_bytes=LIMIT), {"/big": 4 * LIMIT})
    app.state.reached = 0

    async def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        app.state.reached += 1
        if authorization != "Bearer ok":
            raise ApiError(401, "a valid API key is required")

    @app.post("/echo", dependencies=[Depends(authorized)])
    async def echo(request: Request) -> dict:
        return {"size": len(await request.body())}

    @app.post("/big", dependencies=[Depends(authorized)])
    async def big(request: Request) -> dict:
        return {"size": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    with serve(app) as url:
        yield app, url


def test_a_declared_oversized_body_is_refused_before_authentication(app_url):
    app, url = app_url
    before = app.state.reached
    r = httpx.post(f"{url}/echo", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413
    assert r.json() == {"error": {"status": 413, "message": f"request body of {LIMIT + 1} bytes exceeds the limit "
                                                            f"of {LIMIT} bytes for POST /echo"}}
    assert app.state.reached == before  # the route's auth never ran


def test_a_chunked_oversized_body_without_content_length_is_refused_before_authentication(app_url):
    app, url = app_url
    before = app.state.reached
    r = httpx.post(f"{url}/echo", content=chunks(LIMIT * 3))
    assert r.status_code == 413
    assert r.json()["error"]["message"] == f"request body exceeds the limit of {LIMIT} bytes for POST /echo"
    assert app.state.reached == before


def test_a_body_within_the_limit_reaches_the_route_unchanged_chunked_or_not(app_url):
    _, url = app_url
    headers = {"Authorization": "Bearer ok"}
    assert httpx.post(f"{url}/echo", content=b"x" * LIMIT, headers=headers).json() == {"size": LIMIT}
    assert httpx.post(f"{url}/echo", content=chunks(LIMIT), headers=headers).json() == {"size": LIMIT}
    assert httpx.post(f"{url}/echo", content=chunks(LIMIT)).status_code == 401  # then auth decides


def test_a_route_with_its_own_limit_takes_larger_bodies_up_to_it(app_url):
    _, url = app_url
    headers = {"Authorization": "Bearer ok"}
    assert httpx.post(f"{url}/big", content=chunks(4 * LIMIT), headers=headers).json() == {"size": 4 * LIMIT}
    r = httpx.post(f"{url}/big", content=chunks(4 * LIMIT + 1))
    assert r.status_code == 413 and f"limit of {4 * LIMIT} bytes" in r.json()["error"]["message"]


def test_a_body_on_a_get_route_is_limited_too_and_the_server_keeps_serving(app_url):
    _, url = app_url
    r = httpx.request("GET", f"{url}/healthz", content=chunks(LIMIT * 10))
    assert r.status_code == 413
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}


def test_the_default_limit_is_a_setting_of_every_service():
    assert CommonSettings().max_request_body_bytes == 1 << 20
    with pytest.raises(ValueError):
        CommonSettings(max_request_body_bytes=10)
