"""`FakeKlaviyoApi`: the slice of Klaviyo's API the connector uses, as a real HTTP server.

State: profiles (by id, email, external id; read one with `GET /api/profiles/{id}` or
find one with `GET /api/profiles?filter=equals(email,"...")`), bulk import jobs, and system webhooks with the
account's webhook topics (`webhooks_forbidden=True` answers 403 there, as for an account
without access to the Webhooks API; listed webhooks show only the origin of their
`endpoint_url`, "truncated for security" as Klaviyo's spec says). Every request needs
`Authorization: Klaviyo-API-Key <key>` and a `revision` header; request bodies are
validated against Klaviyo's OpenAPI slice; errors are JSON:API `{"errors": [...]}`.
Rate limits are enforced per endpoint in fixed windows (burst per second, steady per
minute; defaults are the documented ones, `limits=` overrides them). A 429 carries
`Retry-After` (whole seconds) and pauses that endpoint: calls made before it ends get 429
again and are counted in `calls_during_pause`.

OAuth, as Klaviyo's app install works: `authorize(redirect_uri, code_challenge)` is the
user's consent and gives a single-use code bound to the redirect URI and the PKCE (S256)
challenge; `POST /oauth/token` (form-encoded, HTTP Basic with the client id and secret)
takes `authorization_code` (with the `code_verifier` that matches) and `refresh_token`
grants and answers `{"access_token","refresh_token","expires_in","token_type","scope"}`,
errors as RFC 6749 `{"error","error_description"}`. Access tokens expire after
`token_lifetime` seconds by the fake's clock; an API call with an expired or unknown
`Authorization: Bearer` token is a 401 `not_authenticated`. `GET /api/accounts` names the
account (`account_id`). `revoke()` is the app uninstalled: its tokens stop working and a
refresh answers 400 `invalid_grant`. `bearer_calls` logs the token of each OAuth API call.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_fake import Clock, FakeHttpApi, Reply, Request, first, header
from tests.fakes.klaviyo_spec import problems

DOCUMENTED_LIMITS: dict[str, tuple[int, int]] = {  # endpoint: (per second, per minute)
    "profile-import": (75, 700),
    "profile-bulk-import-jobs": (10, 150),
    "profiles": (75, 700),
    "webhooks": (1, 15),
    "webhook-topics": (1, 15),
}
#: Topics the fake account offers unless a test says otherwise.
DEFAULT_TOPICS = (
    "event:klaviyo.opened_email", "event:klaviyo.clicked_email", "event:klaviyo.sent_sms",
    "event:klaviyo.viewed_product", "event:klaviyo.added_to_cart",
    "event:klaviyo.started_checkout", "event:klaviyo.placed_order",
)
JSONAPI = "application/vnd.api+json"
TOKEN = "/oauth/token"
CLIENT_ID = "klaviyo-client-id"
CLIENT_SECRET = "klaviyo-client-secret"
ACCOUNT_ID = "XyZ123"


@dataclass
class KlaviyoProfile:
    id: str
    email: str | None = None
    external_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    writes: int = 0
    first_name: str | None = None
    last_name: str | None = None
    location: dict[str, Any] | None = None  # city, country, region, zip ...
    created: str = field(default_factory=lambda: _iso())
    updated: str = field(default_factory=lambda: _iso())


@dataclass
class Webhook:
    id: str
    name: str
    endpoint_url: str
    secret_key: str
    topics: list[str]
    description: str | None = None


@dataclass
class Job:
    id: str
    total: int
    failed: int
    polls_left: int


def error(status: int, code: str, title: str, detail: str, pointer: str = "/data/") -> Reply:
    item = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title,
            "detail": detail, "source": {"pointer": pointer}}
    return Reply(status, {"errors": [item]}, content_type=JSONAPI)


def throttled(seconds: int) -> Reply:
    reply = error(429, "throttled", "Request was throttled.",
                  f"Request was throttled. Expected available in {seconds} second.")
    reply.headers["Retry-After"] = str(seconds)
    return reply


class FakeKlaviyoApi(FakeHttpApi):
    def __init__(
        self,
        api_key: str = "pk_test",
        *,
        clock: Clock | None = None,
        limits: dict[str, tuple[int, int]] | None = None,
        job_polls: int = 1,
        topics: tuple[str, ...] = DEFAULT_TOPICS,
        webhooks_forbidden: bool = False,
        account_id: str = ACCOUNT_ID,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__(clock)
        self.api_key = api_key
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (redirect URI, challenge)
        self.access_tokens: dict[str, float] = {}  # token -> expires at
        self.refresh_tokens: set[str] = set()
        self.bearer_calls: list[str] = []  # the access token of each OAuth API call
        self._issued = 0
        self.limits = {**DOCUMENTED_LIMITS, **(limits or {})}
        self.job_polls = job_polls  # polls a bulk job answers "processing" before "complete"
        self.profiles: dict[str, KlaviyoProfile] = {}
        self.jobs: dict[str, Job] = {}
        self.topics = topics
        self.webhooks_forbidden = webhooks_forbidden
        self.webhooks: dict[str, Webhook] = {}
        self.calls_during_pause = 0
        self.rejected: list[str] = []  # why bodies failed schema validation
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}
        self._quiet_until: dict[str, float] = {}

    # -- state helpers for tests ----------------------------------------------------
    def add_profile(
        self, email: str | None = None, external_id: str | None = None, **attributes: Any
    ) -> str:
        """A profile as the account holds it (`first_name=`, `location={"city": ...}`,
        `properties={...}`); returns its id."""
        profile = KlaviyoProfile(self._new_id(), email, external_id)
        for name, value in attributes.items():
            setattr(profile, name, value)
        self.profiles[profile.id] = profile
        return profile.id

    def reads(self) -> list[Request]:
        """The profile reads (`get_profile`, and `get_profiles` with a filter) made so far."""
        return [r for r in self.requests if r.method == "GET" and (
            r.path.startswith("/api/profiles/") or "filter" in r.query)]

    def by_email(self, email: str) -> KlaviyoProfile | None:
        return next((p for p in self.profiles.values() if p.email == email), None)

    def calls(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if _endpoint(r.path) == endpoint)

    # -- OAuth -------------------------------------------------------------------------
    def authorize(self, redirect_uri: str, code_challenge: str) -> str:
        """The user consented on Klaviyo's authorize page: a single-use code for the
        redirect URI and the PKCE challenge."""
        code = "code-" + uuid.uuid4().hex
        with self.lock:
            self.codes[code] = (redirect_uri, code_challenge)
        return code

    def revoke(self) -> None:
        """The app was uninstalled: every token stops working."""
        with self.lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def token_calls(self, grant_type: str | None = None) -> list[Request]:
        with self.lock:
            found = [r for r in self.requests if r.path == TOKEN]
        return [r for r in found if grant_type is None or _form(r.body).get("grant_type") ==
                grant_type]

    def _token(self, request: Request) -> Reply:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if header(request, "Authorization") != f"Basic {expected}":
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        form = _form(request.body)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            bound = self.codes.pop(form.get("code", ""), None)
            if bound is None:
                return _oauth_error(400, "invalid_grant", "Invalid or expired code.")
            redirect_uri, challenge = bound
            if form.get("redirect_uri") != redirect_uri:
                return _oauth_error(400, "invalid_grant", "Redirect URI mismatch.")
            if _challenge(form.get("code_verifier", "")) != challenge:
                return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
            refresh = "refresh-" + uuid.uuid4().hex
            self.refresh_tokens.add(refresh)
            return self._tokens(refresh)
        if grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            if refresh not in self.refresh_tokens:
                return _oauth_error(400, "invalid_grant", "Refresh token is invalid or revoked.")
            return self._tokens(refresh)
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type.")

    def _tokens(self, refresh: str) -> Reply:
        self._issued += 1
        access = f"kat-{self._issued}-{uuid.uuid4().hex[:8]}"
        self.access_tokens[access] = self.clock() + self.token_lifetime
        return Reply(200, {"access_token": access, "token_type": "Bearer",
                           "expires_in": self.token_lifetime, "refresh_token": refresh,
                           "scope": "accounts:read profiles:read profiles:write"})

    def _authenticated(self, request: Request) -> Reply | None:
        """None when the request's credential is good, else Klaviyo's 401."""
        authorization = header(request, "Authorization")
        if authorization == f"Klaviyo-API-Key {self.api_key}":
            return None
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ")
            with self.lock:
                expires = self.access_tokens.get(token)
                if expires is not None and request.at < expires:
                    self.bearer_calls.append(token)
                    return None
            return error(401, "not_authenticated", "Incorrect authentication credentials.",
                         "The access token is invalid or has expired.")
        return error(401, "not_authenticated", "Authentication credentials were not "
                     "provided.", "Missing or invalid private key.")

    # -- HTTP ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == TOKEN:
            with self.lock:
                return self._token(request)
        refused = self._authenticated(request)
        if refused is not None:
            return refused
        if not header(request, "revision"):
            return error(400, "invalid", "Invalid input.", "A revision header is required.")
        endpoint = _endpoint(request.path)
        with self.lock:
            limited = self._rate_limit(endpoint, request.at)
        if limited is not None:
            return limited
        with self.lock:
            reply = self._route(request, endpoint)
        reply.headers.update(self._rate_headers(endpoint, request.at))
        return reply

    def _route(self, request: Request, endpoint: str) -> Reply:
        if request.method == "POST" and endpoint == "profile-import":
            return self._profile_import(request.body)
        if request.method == "POST" and request.path == "/api/profile-bulk-import-jobs":
            return self._bulk_import(request.body)
        if request.method == "GET" and endpoint == "profile-bulk-import-jobs":
            return self._job(request.path.rsplit("/", 1)[-1])
        if request.method == "GET" and request.path in ("/api/accounts", "/api/accounts/"):
            return self._accounts()
        if request.method == "GET" and request.path == "/api/profiles":
            return self._list_profiles(request)
        if request.method == "GET" and request.path.startswith("/api/profiles/"):
            return self._get_profile(request.path.strip("/").split("/")[2])
        if endpoint in ("webhooks", "webhook-topics") and self.webhooks_forbidden:
            return error(403, "permission_denied", "You do not have permission to perform "
                         "this action.", "This account does not have access to webhooks.")
        if request.method == "GET" and request.path == "/api/webhooks":
            return self._list_webhooks()
        if request.method == "POST" and request.path == "/api/webhooks":
            return self._create_webhook(request.body)
        if request.method == "GET" and request.path == "/api/webhook-topics":
            return self._list_topics()
        return error(404, "not_found", "Not found.", f"No route for {request.method} "
                     f"{request.path}.")

    def _rate_limit(self, endpoint: str, now: float) -> Reply | None:
        quiet = self._quiet_until.get(endpoint, 0.0)
        if now < quiet:
            self.calls_during_pause += 1
            return throttled(max(1, math.ceil(quiet - now)))
        per_second, per_minute = self.limits.get(endpoint, (10**9, 10**9))
        wait = 0.0
        for limit, length in ((per_second, 1), (per_minute, 60)):
            index, count = self._window(endpoint, length, now)
            if count >= limit:
                wait = max(wait, (index + 1) * length - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            self._quiet_until[endpoint] = now + seconds
            return throttled(seconds)
        for length in (1, 60):
            index, count = self._window(endpoint, length, now)
            self._windows[(endpoint, length)] = (index, count + 1)
        return None

    def scripted(self, request: Request, reply: Reply) -> None:
        retry_after = reply.headers.get("Retry-After")
        if reply.status == 429 and retry_after is not None:
            with self.lock:
                self._quiet_until[_endpoint(request.path)] = request.at + float(retry_after)

    def pause(self, endpoint: str, seconds: int) -> None:
        """Answer 429 to `endpoint` for `seconds` from now (a scripted 429 storm)."""
        self._quiet_until[endpoint] = self.clock() + seconds

    def _window(self, endpoint: str, length: int, now: float) -> tuple[int, int]:
        index = math.floor(now / length)
        seen, count = self._windows.get((endpoint, length), (index, 0))
        return index, (count if seen == index else 0)

    def _rate_headers(self, endpoint: str, now: float) -> dict[str, str]:
        per_second, per_minute = self.limits.get(endpoint, (10**9, 10**9))
        _, used = self._window(endpoint, 60, now)
        reset = 60 - int(now % 60)
        return {"RateLimit-Limit": str(per_minute), "RateLimit-Remaining":
                str(max(0, per_minute - used)), "RateLimit-Reset": str(reset)}

    # -- endpoints -------------------------------------------------------------------
    def _profile_import(self, body: Any) -> Reply:
        invalid = self._invalid("ProfileUpsertQuery", body)
        if invalid is not None:
            return invalid
        data = body["data"]
        bad_email = _bad_email(data["attributes"])
        if bad_email:
            return error(400, "invalid", "Invalid input.", bad_email, "/data/attributes/email")
        profile, created = self._upsert(data)
        if profile is None:
            return error(404, "not_found", "Not found.", "A profile with this id does not exist.",
                         "/data/id")
        return Reply(201 if created else 200, self._profile_body(profile), content_type=JSONAPI)

    def _bulk_import(self, body: Any) -> Reply:
        invalid = self._invalid("ProfileImportJobCreateQuery", body)
        if invalid is not None:
            return invalid
        entries = body["data"]["attributes"]["profiles"]["data"]
        if len(entries) > 10_000:
            return error(400, "invalid", "Invalid input.", "At most 10000 profiles per job.")
        failed = 0
        for entry in entries:
            if _bad_email(entry.get("attributes", {})) or self._upsert(entry)[0] is None:
                failed += 1
        job = Job(str(uuid.uuid4()), len(entries), failed, self.job_polls)
        self.jobs[job.id] = job
        return Reply(202, {"data": self._job_resource(job, "queued")}, content_type=JSONAPI)

    def _job(self, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return error(404, "not_found", "Not found.", "No such job.", "/job_id")
        status = "processing" if job.polls_left > 0 else "complete"
        job.polls_left -= 1
        return Reply(200, {"data": self._job_resource(job, status)}, content_type=JSONAPI)

    def _list_profiles(self, request: Request) -> Reply:
        size = int(first(request.query, "page[size]", "20"))
        if not 1 <= size <= 100:
            return error(400, "invalid", "Invalid input.", "page[size] must be 1-100.",
                         "page[size]")
        matching = _filtered(list(self.profiles.values()), first(request.query, "filter"))
        if isinstance(matching, Reply):
            return matching
        chosen = matching[:size]
        body = {"data": [self._profile_body(p)["data"] for p in chosen],
                "links": {"self": f"{self.base_url}/api/profiles", "next": None, "prev": None}}
        return Reply(200, body, content_type=JSONAPI)

    def _get_profile(self, profile_id: str) -> Reply:
        profile = self.profiles.get(profile_id)
        if profile is None:
            return error(404, "not_found", "Not found.",
                         f"A profile with id {profile_id} does not exist.", "/id")
        return Reply(200, self._profile_body(profile), content_type=JSONAPI)

    def _accounts(self) -> Reply:
        link = f"{self.base_url}/api/accounts/{self.account_id}/"
        contact = {"default_sender_name": "Shop", "default_sender_email": "shop@example.com",
                   "website_url": "https://shop.example", "organization_name": "Shop",
                   "street_address": None}
        attributes = {"test_account": False, "contact_information": contact,
                      "industry": "Retail", "timezone": "UTC", "preferred_currency": "USD",
                      "public_api_key": "PkAbC1", "locale": "en-US"}
        data = [{"type": "account", "id": self.account_id, "attributes": attributes,
                 "links": {"self": link}}]
        body = {"data": data, "links": {"self": f"{self.base_url}/api/accounts"}}
        return Reply(200, body, content_type=JSONAPI)

    def _list_webhooks(self) -> Reply:
        body = {"data": [self._webhook_resource(w) for w in self.webhooks.values()],
                "links": {"self": f"{self.base_url}/api/webhooks"}}
        return Reply(200, body, content_type=JSONAPI)

    def _create_webhook(self, body: Any) -> Reply:
        invalid = self._invalid("WebhookCreateQuery", body, "webhooks")
        if invalid is not None:
            return invalid
        attributes = body["data"]["attributes"]
        if urlsplit(attributes["endpoint_url"]).scheme != "https":
            return error(400, "invalid", "Invalid input.", "The endpoint url must be https.",
                         "/data/attributes/endpoint_url")
        topics = [t["id"] for t in body["data"]["relationships"]["webhook-topics"]["data"]]
        unknown = [t for t in topics if t not in self.topics]
        if unknown or not topics:
            return error(400, "invalid", "Invalid input.", f"Unknown webhook topics: {unknown}.",
                         "/data/relationships/webhook-topics")
        webhook = Webhook(self._new_id(), attributes["name"], attributes["endpoint_url"],
                          attributes["secret_key"], topics, attributes.get("description"))
        self.webhooks[webhook.id] = webhook
        return Reply(201, {"data": self._webhook_resource(webhook)}, content_type=JSONAPI)

    def _list_topics(self) -> Reply:
        data = [{"type": "webhook-topic", "id": topic,
                 "links": {"self": f"{self.base_url}/api/webhook-topics/{topic}/"}}
                for topic in self.topics]
        body = {"data": data, "links": {"self": f"{self.base_url}/api/webhook-topics"}}
        return Reply(200, body, content_type=JSONAPI)

    def _webhook_resource(self, webhook: Webhook) -> dict[str, Any]:
        parts = urlsplit(webhook.endpoint_url)
        now = _iso()
        link = f"{self.base_url}/api/webhooks/{webhook.id}/"
        topics = [{"type": "webhook-topic", "id": t} for t in webhook.topics]
        return {"type": "webhook", "id": webhook.id, "attributes": {
            "name": webhook.name, "description": webhook.description,
            "endpoint_url": f"{parts.scheme}://{parts.netloc}", "enabled": True,
            "created_at": now, "updated_at": now},
            "relationships": {"webhook-topics": {"data": topics, "links": {
                "self": link + "relationships/webhook-topics/",
                "related": link + "webhook-topics/"}}},
            "links": {"self": link}}

    # -- helpers ---------------------------------------------------------------------
    def _invalid(self, schema: str, body: Any, slice_name: str = "profiles") -> Reply | None:
        found = problems(schema, body, slice_name)
        if not found:
            return None
        self.rejected.extend(found)
        pointer, _, message = found[0].partition(": ")
        return error(400, "invalid", "Invalid input.", message, pointer)

    def _upsert(self, data: dict[str, Any]) -> tuple[KlaviyoProfile | None, bool]:
        attributes = data.get("attributes") or {}
        profile = self._find(data.get("id"), attributes)
        if profile is None and data.get("id"):
            return None, False
        created = profile is None
        if profile is None:
            profile = KlaviyoProfile(self._new_id())
            self.profiles[profile.id] = profile
        for name in ("email", "external_id"):
            if attributes.get(name) is not None:
                setattr(profile, name, attributes[name])
        for name, value in (attributes.get("properties") or {}).items():
            if value is None:
                profile.properties.pop(name, None)
            else:
                profile.properties[name] = value
        profile.writes += 1
        profile.updated = _iso()
        return profile, created

    def _find(self, profile_id: Any, attributes: dict[str, Any]) -> KlaviyoProfile | None:
        if profile_id:
            return self.profiles.get(str(profile_id))
        for name in ("email", "external_id"):
            value = attributes.get(name)
            if value is not None:
                found = next((p for p in self.profiles.values()
                              if getattr(p, name) == value), None)
                if found is not None:
                    return found
        return None

    def _profile_body(self, profile: KlaviyoProfile) -> dict[str, Any]:
        link = {"self": f"{self.base_url}/api/profiles/{profile.id}/"}
        attributes = {
            "email": profile.email, "phone_number": None, "external_id": profile.external_id,
            "first_name": profile.first_name, "last_name": profile.last_name,
            "organization": None, "locale": None, "title": None, "image": None,
            "created": profile.created, "updated": profile.updated, "last_event_date": None,
            "location": _location(profile.location), "properties": dict(profile.properties),
        }
        data = {"type": "profile", "id": profile.id, "attributes": attributes, "links": link}
        return {"data": data, "links": link}

    def _job_resource(self, job: Job, status: str) -> dict[str, Any]:
        now = _iso()
        done = status == "complete"
        attributes = {
            "status": status, "created_at": now, "total_count": job.total,
            "completed_count": job.total - job.failed if done else 0,
            "failed_count": job.failed if done else 0,
            "completed_at": now if done else None, "expires_at": now, "started_at": now,
        }
        link = {"self": f"{self.base_url}/api/profile-bulk-import-jobs/{job.id}/"}
        return {"type": "profile-bulk-import-job", "id": job.id, "attributes": attributes,
                "links": link}

    def _new_id(self) -> str:
        return "01K" + uuid.uuid4().hex[:23].upper()


def _form(body: Any) -> dict[str, str]:
    text = body if isinstance(body, str) else ""
    return {k: v[0] for k, v in parse_qs(text).items()}


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _oauth_error(status: int, code: str, description: str) -> Reply:
    return Reply(status, {"error": code, "error_description": description})


def _endpoint(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "api" else path


_FILTER = re.compile(r'^equals\((email|external_id|id|phone_number),"((?:[^"\\]|\\.)*)"\)$')


def _filtered(profiles: list[KlaviyoProfile], text: str) -> list[KlaviyoProfile] | Reply:
    """Profiles matching a filter (`equals(email,"a@b.c")`; the fields Klaviyo allows
    `equals` on); 400 as Klaviyo answers for one it cannot read."""
    if not text:
        return profiles
    found = _FILTER.match(text)
    if found is None:
        return error(400, "invalid", "Invalid input.", f"Invalid filter provided: {text}",
                     "filter")
    name, value = found.group(1), re.sub(r"\\(.)", r"\1", found.group(2))
    return [p for p in profiles if getattr(p, name, None) == value]


def _location(location: dict[str, Any] | None) -> dict[str, Any] | None:
    if location is None:
        return None
    names = ("address1", "address2", "city", "country", "latitude", "longitude", "region",
             "zip", "timezone", "ip")
    return {name: location.get(name) for name in names}


def _bad_email(attributes: dict[str, Any]) -> str:
    email = attributes.get("email")
    if email is not None and "@" not in str(email):
        return "Invalid email address."
    return ""


def _iso() -> str:
    return datetime.now(UTC).isoformat()
