"""`FakeHubSpotApi`: the slice of HubSpot's CRM API the connector uses, as a real HTTP server.

State: contacts (id, properties), contact property definitions and groups. Every request
needs `Authorization: Bearer <token>`. Errors use HubSpot's shape
(`{"status","message","category","correlationId","errors":[...]}`). Batch update/upsert
answer 200, or 207 with per-record `errors` (unknown ids, and records scripted to fail with
`fail_records`); a batch carrying an invalid value or a property that does not exist is
400 as a whole, as HubSpot does. Rate limits: a rolling ten-second window per account
(`limit_per_10s`, default the documented 100) and an optional daily limit; both answer 429
with `policyName` TEN_SECONDLY_ROLLING or DAILY. After a 429 that carried `Retry-After`
(scripted with `pause`), calls made before it ends are answered 429 and counted in
`calls_during_pause`.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.manifest import load_manifest
from tests.fakes.http_fake import Clock, FakeHttpApi, Reply, Request, header

CONTACTS = "/crm/v3/objects/contacts"
PROPERTIES = "/crm/v3/properties/contacts"
BUILT_IN = ("email", "firstname", "lastname")
MAX_VALUE = 65_536


@dataclass
class Contact:
    id: str
    properties: dict[str, str] = field(default_factory=dict)
    writes: int = 0


def hs_error(status: int, category: str, message: str, **extra: Any) -> Reply:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
            "category": category, **extra}
    return Reply(status, body)


def rate_limited(policy: str, retry_after: int | None = None) -> Reply:
    reply = hs_error(429, "RATE_LIMITS", f"You have reached your {policy.lower()} limit.",
                     errorType="RATE_LIMIT", policyName=policy)
    if retry_after is not None:
        reply.headers["Retry-After"] = str(retry_after)
    return reply


class FakeHubSpotApi(FakeHttpApi):
    def __init__(
        self,
        token: str = "pat-test",
        *,
        clock: Clock | None = None,
        limit_per_10s: int = 100,
        daily_limit: int | None = None,
    ) -> None:
        super().__init__(clock)
        self.token = token
        self.limit_per_10s = limit_per_10s
        self.daily_limit = daily_limit
        self.contacts: dict[str, Contact] = {}
        self.definitions: dict[str, dict[str, Any]] = {
            name: _definition(name, name.title(), "text", "contactinformation")
            for name in BUILT_IN
        }
        self.groups: dict[str, dict[str, Any]] = {}
        self.calls_during_pause = 0
        self._window: deque[float] = deque()
        self._daily = 0
        self._quiet_until = 0.0
        self._flaky: dict[str, int] = {}

    # -- test helpers -------------------------------------------------------------------
    def add_contact(self, email: str | None = None) -> str:
        contact = Contact(str(100 + len(self.contacts)), {"email": email} if email else {})
        self.contacts[contact.id] = contact
        return contact.id

    def by_email(self, email: str) -> Contact | None:
        return next((c for c in self.contacts.values()
                     if c.properties.get("email") == email), None)

    def define_dcb_properties(self) -> None:
        """As if provisioning had run: the manifest's group and every `dcb_*` property."""
        schema = load_manifest().property_schema
        self.groups[schema.group] = {"name": schema.group, "label": schema.group_label,
                                     "displayOrder": -1, "archived": False}
        for spec in schema.properties:
            self.definitions[spec.name] = _definition(spec.name, spec.label, spec.field_type,
                                                      schema.group, spec.description)

    def define_property(self, name: str, field_type: str, kind: str = "string") -> None:
        """A contact property as someone defined it by hand (a wrong type, say)."""
        self.definitions[name] = _definition(name, name, field_type, "contactinformation",
                                             kind=kind)

    def fail_records(self, ids: set[str], times: int = 1) -> None:
        """The next `times` batch calls answer 207 with a retriable error for these ids."""
        for record in ids:
            self._flaky[record] = times

    def pause(self, seconds: int) -> Reply:
        """A 429 (ten-second policy) with Retry-After; the account stays paused meanwhile."""
        self._quiet_until = self.clock() + seconds
        return rate_limited("TEN_SECONDLY_ROLLING", seconds)

    def scripted(self, request: Request, reply: Reply) -> None:
        retry_after = reply.headers.get("Retry-After")
        if reply.status == 429 and retry_after is not None:
            with self.lock:
                self._quiet_until = max(self._quiet_until, request.at + float(retry_after))

    def batch_calls(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(CONTACTS + "/batch/")]

    # -- HTTP ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        if header(request, "Authorization") != f"Bearer {self.token}":
            return hs_error(401, "INVALID_AUTHENTICATION", "Authentication credentials not "
                            "found. This API supports OAuth 2.0 authentication.")
        with self.lock:
            limited = self._rate_limit(request.at)
            if limited is not None:
                return limited
            reply = self._route(request)
            reply.headers.update(self._rate_headers())
            return reply

    def _route(self, request: Request) -> Reply:
        path, method = request.path, request.method
        if method == "POST" and path == CONTACTS + "/batch/update":
            return self._batch(request.body, upsert=False)
        if method == "POST" and path == CONTACTS + "/batch/upsert":
            return self._batch(request.body, upsert=True)
        if method == "POST" and path == PROPERTIES + "/groups":
            return self._create_group(request.body)
        if method == "GET" and path == PROPERTIES:
            return Reply(200, {"results": list(self.definitions.values())})
        if method == "POST" and path == PROPERTIES:
            return self._create_property(request.body)
        return hs_error(404, "OBJECT_NOT_FOUND", f"No route for {method} {path}")

    def _rate_limit(self, now: float) -> Reply | None:
        if now < self._quiet_until:
            self.calls_during_pause += 1
            return rate_limited("TEN_SECONDLY_ROLLING", max(1, math.ceil(self._quiet_until - now)))
        if self.daily_limit is not None and self._daily >= self.daily_limit:
            return rate_limited("DAILY")
        while self._window and self._window[0] <= now - 10.0:
            self._window.popleft()
        if len(self._window) >= self.limit_per_10s:
            return rate_limited("TEN_SECONDLY_ROLLING")
        self._window.append(now)
        self._daily += 1
        return None

    def _rate_headers(self) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Max": str(self.limit_per_10s),
                   "X-HubSpot-RateLimit-Remaining": str(self.limit_per_10s - len(self._window)),
                   "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(self.daily_limit - self._daily)
        return headers

    # -- contacts -------------------------------------------------------------------
    def _batch(self, body: Any, *, upsert: bool) -> Reply:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs or len(inputs) > 100:
            return hs_error(400, "VALIDATION_ERROR", "inputs: between 1 and 100 records")
        invalid = self._invalid(inputs, upsert)
        if invalid is not None:
            return invalid
        results, errors = [], []
        for item in inputs:
            record = str(item.get("id"))
            if self._flaky.get(record, 0) > 0:
                self._flaky[record] -= 1
                errors.append(_record_error("INTERNAL_ERROR", "Internal error", item))
                continue
            contact, new = self._apply(item, upsert)
            if contact is None:
                errors.append(_record_error("OBJECT_NOT_FOUND", "Could not get some CONTACT "
                                            "objects, they may be deleted or not exist.", item))
                continue
            results.append(_result(contact, item, new if upsert else None))
        now = _iso()
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                   "startedAt": now, "completedAt": now}
        if errors:
            payload.update(numErrors=len(errors), errors=errors)
            return Reply(207, payload)
        return Reply(200, payload)

    def _invalid(self, inputs: list[Any], upsert: bool) -> Reply | None:
        for item in inputs:
            properties = item.get("properties") or {}
            for name, value in properties.items():
                if name not in self.definitions:
                    return hs_error(400, "VALIDATION_ERROR", "Property values were not valid: "
                                    f"Property \"{name}\" does not exist",
                                    errors=[{"message": f"Property \"{name}\" does not exist",
                                             "code": "PROPERTY_DOESNT_EXIST",
                                             "context": {"propertyName": [name]}}])
                if not isinstance(value, str) or len(value) > MAX_VALUE:
                    return hs_error(400, "VALIDATION_ERROR", "Property values were not valid: "
                                    f"{name} is longer than {MAX_VALUE} characters",
                                    errors=[{"message": "value too long", "code": "INVALID_LONG",
                                             "context": {"propertyName": [name]}}])
            if upsert and item.get("idProperty") != "email":
                return hs_error(400, "VALIDATION_ERROR", "upsert needs idProperty email")
            if upsert and "@" not in str(item.get("id")):
                return hs_error(400, "VALIDATION_ERROR", "Property values were not valid: "
                                "Email address is invalid",
                                errors=[{"message": "invalid email", "code": "INVALID_EMAIL",
                                         "context": {"propertyName": ["email"]}}])
        return None

    def _apply(self, item: dict[str, Any], upsert: bool) -> tuple[Contact | None, bool]:
        record = str(item.get("id"))
        contact = self.by_email(record) if upsert else self.contacts.get(record)
        new = contact is None
        if contact is None and upsert:
            contact = Contact(str(100 + len(self.contacts)), {"email": record})
            self.contacts[contact.id] = contact
        if contact is None:
            return None, False
        contact.properties.update(item.get("properties") or {})
        contact.writes += 1
        return contact, new

    # -- properties -----------------------------------------------------------------
    def _create_group(self, body: Any) -> Reply:
        name = body.get("name")
        if name in self.groups:
            return hs_error(409, "OBJECT_ALREADY_EXISTS", f"A group named '{name}' exists.")
        group = {"name": name, "label": body.get("label", name),
                 "displayOrder": body.get("displayOrder", -1), "archived": False}
        self.groups[name] = group
        return Reply(201, group)

    def _create_property(self, body: Any) -> Reply:
        name = body.get("name")
        if name in self.definitions:
            return hs_error(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already "
                            "exists.")
        if body.get("groupName") not in self.groups:
            return hs_error(400, "VALIDATION_ERROR", "group does not exist")
        definition = _definition(name, body["label"], body["fieldType"], body["groupName"],
                                 body.get("description", ""), body.get("type", "string"))
        self.definitions[name] = definition
        return Reply(201, definition)


def _definition(
    name: str, label: str, field_type: str, group: str, description: str = "",
    kind: str = "string",
) -> dict[str, Any]:
    return {"name": name, "label": label, "type": kind, "fieldType": field_type,
            "groupName": group, "description": description, "options": [],
            "createdAt": _iso(), "updatedAt": _iso(), "formField": False, "hidden": False,
            "calculated": False, "externalOptions": False, "hasUniqueValue": False}


def _record_error(category: str, message: str, item: dict[str, Any]) -> dict[str, Any]:
    context = {"ids": [str(item.get("id"))]}
    if item.get("objectWriteTraceId"):
        context["objectWriteTraceId"] = [item["objectWriteTraceId"]]
    return {"status": "error", "category": category, "message": message, "context": context,
            "links": {}, "errors": []}


def _result(contact: Contact, item: dict[str, Any], new: bool | None) -> dict[str, Any]:
    result: dict[str, Any] = {"id": contact.id, "properties": dict(contact.properties),
                              "createdAt": _iso(), "updatedAt": _iso(), "archived": False}
    if item.get("objectWriteTraceId"):
        result["objectWriteTraceId"] = item["objectWriteTraceId"]
    if new is not None:
        result["new"] = new
    return result


def _iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
