"""`KlaviyoWebhooks`: registers the connector's system webhook through the official SDK.

`register(endpoint_url, name=..., secret=...)` is idempotent:

1. `Webhooks.get_webhooks` (GET /api/webhooks): a webhook already calling `endpoint_url`
   means there is nothing to do (`EXISTS`). Klaviyo lists `endpoint_url` "truncated for
   security", so a listed webhook with our `name` whose URL begins ours counts too.
2. `Webhooks.get_webhook_topics` (GET /api/webhook-topics): the account's topics whose
   metric the connector maps (the topic's last segment, `event:klaviyo.placed_order` ->
   Placed Order, as the inbound parser reads it). None of them: `NO_TOPICS`.
3. `Webhooks.create_webhook` (POST /api/webhooks) with those topics: `CREATED`.

A 403 anywhere means the account has no access to the Webhooks API (it is for Advanced KDP
customers and app partners): `UNAVAILABLE`, with why. Any other failure is `FAILED` with
the classified, scrubbed reason. Nothing here raises for a platform answer.

The Webhooks API allows 1 call/s and 15/min: every call passes the gate built by
`webhooks_throttle`, the SDK's own retries are off and every call has a timeout.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from openapi_client.rest import RESTClientObject

from adapters.klaviyo.errors import classify
from adapters.klaviyo.inbound_mapping import DEFAULT_METRICS, event_type_of
from connector.core.adaptive import AdaptiveRate
from connector.core.events import EventType
from connector.core.pauses import PauseBook
from connector.core.ratelimit import FixedWindowLimiter, LimiterByKey
from connector.core.throttle import CallGate, Throttle

WEBHOOKS = "webhooks"
WEBHOOKS_LIMITS = ((1, 1.0), (15, 60.0))  # documented: burst 1/s, steady 15/min
ATTEMPTS = 3  # a 429 is waited out twice: an install is interactive, not a batch
NO_ACCESS = (
    "this account cannot use Klaviyo's Webhooks API (403: system webhooks are for Advanced "
    "KDP customers and app partners); use the flow Webhook actions below instead"
)


def webhooks_throttle(
    pauses: PauseBook, sleep: Callable[[float], None], clock: Callable[[], float]
) -> Throttle:
    """The gate for the Webhooks API: paced at the burst rate (an install makes at most
    three calls), within both documented windows."""
    limiter = LimiterByKey({WEBHOOKS: FixedWindowLimiter(list(WEBHOOKS_LIMITS), clock)})
    return Throttle(limiter, pauses, {WEBHOOKS: AdaptiveRate(1.0, clock)}, sleep)


class Registration(enum.Enum):
    CREATED = "created"
    EXISTS = "exists"
    UNAVAILABLE = "unavailable"
    NO_TOPICS = "no_topics"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookRegistration:
    """What `register` found or did; `detail` is safe to print."""

    status: Registration
    detail: str
    webhook_id: str | None = None
    topics: tuple[str, ...] = ()


class _Refused(Exception):
    def __init__(self, registration: WebhookRegistration) -> None:
        super().__init__(registration.detail)
        self.registration = registration


class KlaviyoWebhooks:
    def __init__(
        self, api_key: str, *, base_url: str, gate: CallGate, timeout: float = 10.0
    ) -> None:
        api = KlaviyoAPI(
            api_key,
            max_retries=1,
            test_host=base_url.rstrip("/"),
            options={"USE_DICTIONARY_FOR_RESPONSE_DATA": True},
        )
        api.api_client.configuration.retries = urllib3.Retry(0, redirect=False)
        api.api_client.rest_client = RESTClientObject(api.api_client.configuration)
        self._webhooks = api.Webhooks  # each access builds a new API object: keep one
        self._gate = gate
        self._timeout = timeout

    def register(
        self,
        endpoint_url: str,
        *,
        name: str,
        secret: str,
        metrics: Mapping[str, EventType] = DEFAULT_METRICS,
    ) -> WebhookRegistration:
        """Make sure one system webhook calls `endpoint_url`, signed with `secret`."""
        try:
            found = self._existing(endpoint_url, name)
            if found is not None:
                return found
            topics = self._topics(metrics)
            if not topics:
                return WebhookRegistration(
                    Registration.NO_TOPICS,
                    "the account offers no webhook topic for the metrics the connector reads",
                )
            created = self._call(
                self._webhooks.create_webhook, _create_body(endpoint_url, name, secret, topics)
            )
        except _Refused as refused:
            return refused.registration
        webhook_id = str((created.get("data") or {}).get("id", ""))
        return WebhookRegistration(
            Registration.CREATED, f"created webhook {webhook_id}", webhook_id, topics
        )

    def _existing(self, endpoint_url: str, name: str) -> WebhookRegistration | None:
        listed = self._call(self._webhooks.get_webhooks, include=["webhook-topics"])
        for webhook in listed.get("data") or []:
            attributes = webhook.get("attributes") or {}
            url = str(attributes.get("endpoint_url") or "")
            if url == endpoint_url or (
                attributes.get("name") == name and url and endpoint_url.startswith(url)
            ):
                relation = (webhook.get("relationships") or {}).get("webhook-topics") or {}
                topics = tuple(str(t.get("id")) for t in relation.get("data") or [])
                webhook_id = str(webhook.get("id"))
                return WebhookRegistration(
                    Registration.EXISTS,
                    f"webhook {webhook_id} already calls this URL",
                    webhook_id,
                    topics,
                )
        return None

    def _topics(self, metrics: Mapping[str, EventType]) -> tuple[str, ...]:
        listed = self._call(self._webhooks.get_webhook_topics)
        offered = [str(t.get("id")) for t in listed.get("data") or []]
        return tuple(t for t in offered if event_type_of(_metric_of(t), metrics) is not None)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One call through the gate; a 429 waits its Retry-After and is tried again, up to
        `ATTEMPTS` in all. Raises `_Refused` with the registration to report otherwise."""
        for attempt in range(1, ATTEMPTS + 1):
            self._gate.wait_turn(WEBHOOKS)
            try:
                answer = method(*args, _request_timeout=self._timeout, **kwargs)
            except ApiException as exc:
                if exc.status == 403:
                    unavailable = WebhookRegistration(Registration.UNAVAILABLE, NO_ACCESS)
                    raise _Refused(unavailable) from None
                verdict = classify(exc, WEBHOOKS)
            except Exception as exc:
                verdict = classify(exc, WEBHOOKS)
            else:
                self._gate.succeeded(WEBHOOKS)
                return answer if isinstance(answer, dict) else {}
            if not verdict.throttled or attempt == ATTEMPTS:
                break
            self._gate.throttled(WEBHOOKS, WEBHOOKS, verdict.retry_after or 1.0, verdict.reason)
        raise _Refused(
            WebhookRegistration(Registration.FAILED, f"Klaviyo answered: {verdict.reason}")
        )


def _metric_of(topic: str) -> str:
    """`event:klaviyo.placed_order` -> `placed_order`."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _create_body(
    endpoint_url: str, name: str, secret: str, topics: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "data": {
            "type": "webhook",
            "attributes": {
                "name": name,
                "endpoint_url": endpoint_url,
                "secret_key": secret,
                "description": "dcb-connector: commerce events for dynamic content",
            },
            "relationships": {
                "webhook-topics": {
                    "data": [{"type": "webhook-topic", "id": topic} for topic in topics]
                }
            },
        }
    }
