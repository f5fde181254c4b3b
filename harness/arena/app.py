"""The arena web app: a JSON API (``/api/pair``, ``/api/vote``, ``/api/skip``, ``/api/health``, OpenAPI
schema at ``/openapi.json``), blind images under ``/img/<random id>``, one voting page that is a thin client
of the API, and the public leaderboard (``/leaderboard``, ``/leaderboard.json``; see
:mod:`harness.arena.leaderboard`: aggregates only, fitted on a schedule, delayed and batched).

Integrity guards, in the order a request meets them:

* **Same origin** (CSRF): requests whose ``Sec-Fetch-Site`` says ``cross-site``/``same-site`` or whose
  ``Origin`` is another host are refused (403), unless that origin was allowed explicitly (it then gets
  CORS with credentials; the ``SameSite=Strict`` voter cookie still only travels within one site, so a
  front end on another site should call the API from its server). Votes must be ``application/json``
  (415), which no HTML form can send. Cookies are ``HttpOnly``; responses forbid framing.
* **Voter cookie**: a signed random id, issued with the first page or pair; a vote needs the cookie the
  pair was served to.
* **Body size**: a request body larger than ``max_body_bytes`` is refused with 413 before anything parses
  it, by its ``Content-Length`` or, for a streamed body without one, as soon as it grows past the limit.
* **Client address**: the connecting address, unless the connection comes from a proxy the operator named
  (``--forwarded-allow-ips``); only then is ``X-Forwarded-For`` believed (see :mod:`harness.arena.server`).
* **Rate limits**: token buckets per voter and per client IP, for pairs and votes, and for new voter
  cookies per client IP, so a fresh cookie does not reset the per-voter limit (429 + ``Retry-After``).
* **Pair token**: HMAC-signed, expiring, bound to the voter, single use (see :mod:`harness.arena.tokens`).

No response of the voting page or API before a vote names a model, provider, target or run (a skip names
none either); response headers carry no server name and every API answer is ``Cache-Control: no-store``.
The leaderboard names models, with aggregates only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harness import __version__
from harness.arena.blind import MEDIA_TYPE
from harness.arena.config import ArenaConfig
from harness.arena.leaderboard import (
    LeaderboardPublisher,
    PublicLeaderboard,
    board_view,
    window_start,
)
from harness.arena.ratelimit import ArenaLimits, retry_after_header
from harness.arena.sampling import PairBy
from harness.arena.schemas import Health, PairView, Problem, Reveal, SkipIn, Skipped, VoteIn
from harness.arena.service import ArenaService, VoteRejected
from harness.arena.sizelimit import BodySizeLimit
from harness.errors import ConfigError
from harness.store import Store

VOTER_COOKIE = "arena_voter"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
IMAGE_ID_PATTERN = r"^[A-Za-z0-9_-]{32}$"

SECURITY_HEADERS = (
    ("content-security-policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
     "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response and ``no-store`` to API and image responses.
    ``resource_policy`` is ``same-origin``, or ``same-site`` when other front ends are allowed to show
    the images."""

    def __init__(self, app: ASGIApp, resource_policy: str = "same-origin") -> None:
        self.app = app
        self.resource_policy = resource_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = str(scope.get("path", "")).startswith(("/api/", "/img/"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
                headers.setdefault("cross-origin-resource-policy", self.resource_policy)
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("harness.arena", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined)


class Guards:
    """Per-app request checks: origin, content type, voter cookie, rate limits."""

    def __init__(self, config: ArenaConfig, service: ArenaService) -> None:
        self.config = config
        self.service = service
        self.limits = ArenaLimits.for_config(config)
        self.allowed_origins = {o.rstrip("/").lower() for o in config.allowed_origins}

    def same_origin(self, request: Request) -> None:
        """Refuse requests a browser sends on behalf of another site; ``--allowed-origin`` front ends
        are trusted explicitly."""
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() in self.allowed_origins:
            return
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        if origin is not None:
            host = urlsplit(origin).netloc
            if not host or host != request.headers.get("host"):
                raise HTTPException(403, "cross-origin request refused (Origin does not match this arena)")

    @staticmethod
    def json_body(request: Request) -> None:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise HTTPException(415, "votes must be sent as application/json")

    def voter(self, request: Request) -> str | None:
        return self.service.signer.voter_from_cookie(request.cookies.get(VOTER_COOKIE))

    @staticmethod
    def address(request: Request) -> str:
        """The client's address: the connecting one, or what a trusted proxy said (uvicorn decides)."""
        return request.client.host if request.client else "unknown"

    async def limit(self, kind: Literal["pairs", "votes"], voter: str | None, request: Request, *,
                    new_voter: bool = False) -> None:
        """Spend a token of every bucket this request counts against, or refuse it with 429."""
        ip = self.address(request)
        wait = await (self.limits.pairs(voter, ip, new_voter=new_voter) if kind == "pairs"
                      else self.limits.votes(voter, ip))
        if wait > 0:
            raise HTTPException(429, f"too many requests: retry in {retry_after_header(wait)} s",
                                headers={"Retry-After": retry_after_header(wait)})


def _set_voter_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(VOTER_COOKIE, value, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "cross-site request, missing voter cookie, or forged token"},
    413: {"model": Problem, "description": "request body over the arena's size limit"},
    429: {"model": Problem, "description": "rate limit reached; see Retry-After"},
}


def create_app(config: ArenaConfig, *, clock: Callable[[], float] = time.time,
               pair_by: PairBy | None = None, leaderboard_refresh_s: float | None = None) -> FastAPI:
    """The arena app over ``config.db``. Opens the store and loads the pool now, so a bad configuration
    fails here (``HarnessError``) rather than at the first request; the store closes on shutdown.
    ``clock`` (Unix seconds) is injectable for expiry tests. ``pair_by``: ``model`` or ``target`` (None:
    the configuration's setting, else ``model``; see :mod:`harness.arena.sampling`). ``leaderboard_refresh_s``:
    seconds between fits of the public board (None: the configuration's ``leaderboard_refresh_s``)."""
    service = ArenaService(config, clock=clock, pair_by=pair_by)
    guards = Guards(config, service)
    templates = _templates()
    refresh = leaderboard_refresh_s if leaderboard_refresh_s is not None else config.leaderboard_refresh_s
    try:
        board = LeaderboardPublisher(service.arena_votes, open_store=partial(Store.open, config.db, readonly=True),
                                     refresh_s=refresh, rated_by=service.pair_by, clock=clock)
    except ValueError as exc:
        service.close()
        raise ConfigError(str(exc)) from None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        guards.limits.close()
        board.close()
        service.close()

    app = FastAPI(
        title="Image arena", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        openapi_url="/openapi.json",
        description="Blind pairwise voting on generated images. Fetch a pair, show both images and the "
                    "prompt, post the voter's choice with the pair's token; names are revealed in the answer.",
    )
    app.state.arena = service
    app.state.leaderboard = board
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(SecurityHeaders, resource_policy="same-site" if config.allowed_origins else "same-origin")
    if config.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.allowed_origins), allow_credentials=True,
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type"])
    app.mount("/static", StaticFiles(packages=[("harness.arena", "static")]), name="static")

    @app.exception_handler(VoteRejected)
    async def rejected(_: Request, exc: VoteRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own answer echoes each bad value, which cannot be JSON when it is NaN or Infinity (a
        lenient client's JSON allows them); the field, the reason and the error type are enough."""
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    async def serve_pair(request: Request) -> tuple[PairView, str | None]:
        guards.same_origin(request)
        voter, cookie = guards.voter(request), None
        if voter is None:
            voter, cookie = service.signer.new_voter_cookie()
        await guards.limit("pairs", voter, request, new_voter=cookie is not None)
        return await service.new_pair(voter, guards.address(request)), cookie

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        try:
            pair, cookie = await serve_pair(request)
        except VoteRejected as exc:
            html = templates.get_template("none.html").render(message=str(exc))
            return HTMLResponse(html, status_code=exc.status, headers={"Cache-Control": "no-store"})
        tally = await service.tally(guards.voter(request) or "") if cookie is None else None
        html = templates.get_template("index.html").render(pair=pair, votes_cast=tally.votes if tally else 0)
        response = HTMLResponse(html, headers={"Cache-Control": "no-store"})
        if cookie:
            _set_voter_cookie(response, request, cookie)
        return response

    @app.get("/api/pair", response_model=PairView, summary="Serve a new blind pair",
             responses={**_ERRORS, 404: {"model": Problem, "description": "no pair left that this voter may see"}})
    async def new_pair(request: Request, response: Response) -> PairView:
        """A blind pair for the caller's voter cookie (issued now when absent). Never shows an output whose
        makers a vote already revealed to this cookie or address."""
        pair, cookie = await serve_pair(request)
        if cookie:
            _set_voter_cookie(response, request, cookie)
        return pair

    async def vote_guards(request: Request) -> str:
        guards.same_origin(request)
        guards.json_body(request)
        voter = guards.voter(request)
        await guards.limit("votes", voter, request)
        if voter is None:
            raise HTTPException(403, "no valid voter cookie: load a pair from this arena first")
        return voter

    voter_checked = Depends(vote_guards)

    @app.post(
        "/api/vote", response_model=Reveal, summary="Vote on a served pair",
        responses={**_ERRORS, 400: {"model": Problem, "description": "the body cannot be decoded"},
                   409: {"model": Problem, "description": "the pair was already voted on, or shows an output "
                                                          "an earlier vote revealed to this voter"},
                   410: {"model": Problem, "description": "the pair's token expired"},
                   415: {"model": Problem, "description": "body is not application/json"}},
    )
    async def vote(request: Request, body: VoteIn, voter: str = voter_checked) -> Reveal:
        """Record the vote (once per pair) and reveal who made each image."""
        return await service.vote(voter, body.token, body.outcome, body.client_ms, address=guards.address(request))

    @app.post(
        "/api/skip", response_model=Skipped, summary="Pass on a served pair",
        responses={**_ERRORS, 400: {"model": Problem, "description": "the body cannot be decoded"},
                   409: {"model": Problem, "description": "the pair was already voted on or skipped"},
                   410: {"model": Problem, "description": "the pair's token expired"},
                   415: {"model": Problem, "description": "body is not application/json"}},
    )
    async def skip(body: SkipIn, voter: str = voter_checked) -> Skipped:
        """Pass on a served pair without judging it: recorded, never a vote, no names revealed."""
        return await service.skip(voter, body.token, body.client_ms)

    @app.get("/img/{image_id}", summary="A blind image of a served pair",
             responses={200: {"content": {MEDIA_TYPE: {}}, "description": "WebP image, no metadata"},
                        404: {"model": Problem, "description": "unknown image id"}, 403: _ERRORS[403]},
             response_class=Response)
    async def image(request: Request,
                    image_id: Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="random id")]) -> Response:
        guards.same_origin(request)
        data = await service.image(image_id)
        if data is None:
            raise HTTPException(404, "unknown image id")
        return Response(data, media_type=MEDIA_TYPE)

    def board_headers() -> dict[str, str]:
        """Shared caches may keep the board until it can next change."""
        return {"Cache-Control": f"public, max-age={max(1, int(window_start(clock(), refresh) + refresh - clock()))}"}

    @app.get("/leaderboard.json", response_model=PublicLeaderboard, summary="The public leaderboard")
    async def leaderboard_json(response: Response) -> PublicLeaderboard:
        """Aggregates only, refitted on a schedule and delayed (see ``docs/leaderboard.md``); no login."""
        response.headers.update(board_headers())
        return await board.current()

    @app.get("/leaderboard.schema.json", include_in_schema=False)
    async def leaderboard_schema() -> JSONResponse:
        return JSONResponse(PublicLeaderboard.json_schema(), headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/leaderboard", response_class=HTMLResponse, include_in_schema=False)
    async def leaderboard_page() -> HTMLResponse:
        current = await board.current()
        html = templates.get_template("leaderboard.html").render(board=current, view=board_view(current))
        return HTMLResponse(html, headers=board_headers())

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/health", response_model=Health, response_model_exclude_none=True, summary="Liveness and counts")
    async def health() -> Health:
        return await service.health()

    return app
