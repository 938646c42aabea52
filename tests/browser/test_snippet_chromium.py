"""dcb.js in a real browser: headless Chromium on a shop page, the connector on another
origin (so CORS and the preflight are the browser's own), a click on "Add to cart".

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
test skips with the reason, except where `DCB_REQUIRE_BROWSER=1` (CI): there it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from connector.bootstrap import build_service
from connector.core.storage import Claimed
from connector.settings import Settings

KEY = "pk_test_browser"
CHROMIUM = os.environ.get("DCB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DCB_CHROMEDRIVER", "/usr/bin/chromedriver")


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            return f"{path} not found (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _need_browser() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("DCB_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"the browser test must run here (DCB_REQUIRE_BROWSER is set): {missing}")
    pytest.skip(missing)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Wool jacket</title>
<script src="{dcb}/v1/dcb.js" data-key="{key}" async></script>
<script>
  window.dcbq = window.dcbq || [];
  dcbq.push(["track", "product_viewed", {{"product_id": "J-1", "name": "Wool jacket",
             "url": "{shop}/p/j-1", "price": 200}}]);
</script></head>
<body>
  <h1>Wool jacket</h1>
  <button id="add" data-dcb-track="cart_updated"
          data-dcb-properties='{{"cart_value": 200, "currency": "EUR",
            "items": [{{"product_id": "J-1", "quantity": 1, "url": "{shop}/p/j-1"}}]}}'>
    Add to cart</button>
</body></html>
"""


@dataclass
class Shop:
    """A shop's page server on 127.0.0.1, and the connector on another port."""

    url: str
    connector: str
    service: Any

    def queued(self, count: int, timeout: float = 10.0) -> list[Claimed]:
        store = self.service.app.extensions["dcb"]["store"]
        found: list[Claimed] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            found += store.claim("browser-test", 10, time.time())
            time.sleep(0.05)
        return found


def _serve_forever(server: Any) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    _need_browser()
    page: dict[str, bytes] = {}

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = page.get("html", b"")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    pages = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    shop_url = f"http://127.0.0.1:{pages.server_address[1]}"
    settings = Settings.from_env(
        {
            "DCB_DATA_DIR": str(tmp_path),
            "DCB_HUBSPOT_ACCESS_TOKEN": "pat-test",
            "DCB_PUBLISHABLE_KEY": KEY,
            "DCB_ALLOWED_ORIGINS": shop_url,
        }
    )
    service = build_service(settings, workers=0)  # web only: the events stay queued
    web = make_server("127.0.0.1", 0, service.app, threaded=True)
    connector = f"http://127.0.0.1:{web.server_port}"
    page["html"] = PAGE.format(dcb=connector, key=KEY, shop=shop_url).encode()
    threads = [_serve_forever(pages), _serve_forever(web)]
    yield Shop(shop_url, connector, service)
    for server in (pages, web):
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(5)
    service.app.extensions["dcb"]["store"].close()


@pytest.fixture
def chromium() -> Iterator[Any]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--no-first-run",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


def test_add_to_cart_in_chromium_reaches_the_connector(shop: Shop, chromium: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(shop.url)
    WebDriverWait(chromium, 10).until(lambda d: d.execute_script("return !!window.dcb"))
    browser_id = chromium.execute_script("return dcb.browserId()")

    chromium.find_element(By.ID, "add").click()

    events = {item.event["type"]: item for item in shop.queued(2)}
    assert set(events) == {"product_viewed", "cart_updated"}, events
    cart = events["cart_updated"]
    assert cart.event["source"] == "browser"
    assert cart.event["profile"] == {"browser_id": browser_id}
    assert cart.event["properties"]["cart_value"] == 200.0
    assert cart.event["properties"]["items"][0]["url"] == f"{shop.url}/p/j-1"
    assert cart.platforms == ("hubspot",)

    # The page can read the answers (CORS headers are right), refusals included; and the
    # browser id survives a reload.
    answer = chromium.execute_async_script(
        "dcb.track('checkout_started', {cart_value: 200}).then(arguments[0])"
    )
    assert answer["status"] == 202 and answer["accepted"] == 1
    refused = chromium.execute_async_script(
        "dcb.track('order_placed', {}).then(arguments[0])"
    )
    assert refused["status"] == 400 and "not accepted from a browser" in refused["error"]
    chromium.refresh()
    WebDriverWait(chromium, 10).until(lambda d: d.execute_script("return !!window.dcb"))
    assert chromium.execute_script("return dcb.browserId()") == browser_id


def test_a_page_on_another_origin_cannot_send(shop: Shop, chromium: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    other = shop.url.replace("127.0.0.1", "localhost")  # same server, another origin
    chromium.get(other)
    WebDriverWait(chromium, 10).until(lambda d: d.execute_script("return !!window.dcb"))
    answer = chromium.execute_async_script(
        "dcb.track('cart_updated', {cart_value: 1}).then(arguments[0])"
    )
    assert answer["status"] == 0  # the preflight was refused: fetch failed
    assert shop.queued(1, timeout=0.5) == []
    logs = json.dumps(answer)
    assert "Failed to fetch" in logs or "TypeError" in logs
