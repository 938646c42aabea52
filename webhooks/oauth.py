"""The OAuth install routes, per platform whose public app is configured:
`GET /oauth/<platform>/start` and `GET /oauth/<platform>/callback` (hubspot, klaviyo).

Thin: `start` redirects to the authorize URL the install service made and sets the state
cookie that binds the install to this browser; `callback` hands the code, the state and
the cookie to the service and shows a short HTML page saying what happened. The service
(`InstallFlow`, wired by the composition root) holds every check.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Flask, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

log = logging.getLogger("dcb.web")

PLATFORM_NAMES = {"hubspot": "HubSpot", "klaviyo": "Klaviyo"}
STATE_COOKIE = "dcb_oauth_state"
COOKIE_SECONDS = 600


@dataclass(frozen=True, slots=True)
class InstallPage:
    """What the browser is shown after the callback."""

    ok: bool
    title: str
    detail: str


@dataclass(frozen=True, slots=True)
class InstallFlow:
    """`start()` -> (authorize URL, state); `finish(code, state, cookie)` -> the page
    (it never raises for a bad request: a refusal is a page with `ok` False)."""

    start: Callable[[], tuple[str, str]]
    finish: Callable[[str | None, str | None, str | None], InstallPage]
    secure_cookie: bool = True


def start_path(platform: str) -> str:
    return f"/oauth/{platform}/start"


def callback_path(platform: str) -> str:
    return f"/oauth/{platform}/callback"


START_PATH = start_path("hubspot")
CALLBACK_PATH = callback_path("hubspot")


def add_install_routes(app: Flask, flows: Mapping[str, InstallFlow]) -> None:
    """The start and callback routes of each platform's install flow."""
    for platform, flow in flows.items():
        _add_routes(app, platform, flow)


def _add_routes(app: Flask, platform: str, flow: InstallFlow) -> None:
    cookie_path = f"/oauth/{platform}"
    name = PLATFORM_NAMES.get(platform, platform)

    @app.get(start_path(platform), endpoint=f"oauth_start_{platform}")
    def oauth_start() -> BaseResponse:
        url, state = flow.start()
        response = redirect(url, code=302)
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=COOKIE_SECONDS,
            path=cookie_path,
            secure=flow.secure_cookie,
            httponly=True,
            samesite="Lax",  # sent on the platform's top-level redirect back to us
        )
        return response

    @app.get(callback_path(platform), endpoint=f"oauth_callback_{platform}")
    def oauth_callback() -> tuple[Response, int]:
        error = request.args.get("error")
        if error:
            page = InstallPage(
                False,
                "The app was not installed",
                f"{name} said: {error} {request.args.get('error_description', '')}".strip(),
            )
        else:
            page = flow.finish(
                request.args.get("code"),
                request.args.get("state"),
                request.cookies.get(STATE_COOKIE),
            )
        if not page.ok:
            log.info("oauth callback refused: %s", page.detail)
        response = Response(_render(page), content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        response.delete_cookie(STATE_COOKIE, path=cookie_path)
        return response, 200 if page.ok else 400


def _render(page: InstallPage) -> str:
    mark = "&#10003;" if page.ok else "&#10007;"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(page.title)}</title>"
        "<meta name=viewport content='width=device-width'>"
        "<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:4em auto;"
        "padding:0 1em}h1{font-size:1.4em}</style></head><body>"
        f"<h1>{mark} {html.escape(page.title)}</h1><p>{html.escape(page.detail)}</p>"
        "</body></html>"
    )
