/*! dcb.js: sends a shop's product views, cart changes and checkout steps to dcb-connector.
 *
 * <script src="https://hooks.shop.example/v1/dcb.js" data-key="pk_live_..." async
 *         data-identity="(optional) token your server signed for the logged-in shopper"></script>
 *
 * dcb.track("cart_updated", {cart_value: 59.0, currency: "EUR", items: [...]});
 * dcb.identify(token);     // after a login, with a token your server signed
 * Before the script has loaded, queue calls: (window.dcbq = window.dcbq || []).push(["track", ...]).
 * Or without code: <button data-dcb-track="cart_updated" data-dcb-properties='{"product_id": "J-1"}'>
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.dcb && window.dcb.loaded) { return; }
  var key = script.getAttribute("data-key") || "";
  var endpoint = new URL("/v1/events", script.src).href;
  var identity = script.getAttribute("data-identity") || null;
  var STORE = "dcb_bid";

  function randomId() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // One anonymous id per browser: in localStorage, else a first-party cookie.
  function browserId() {
    var id = null;
    try { id = localStorage.getItem(STORE); } catch (e) { /* storage blocked */ }
    if (!id) {
      var match = document.cookie.match(/(?:^|;\s*)dcb_bid=([A-Za-z0-9_-]{8,64})/);
      id = match ? match[1] : randomId();
    }
    try { localStorage.setItem(STORE, id); } catch (e) { /* storage blocked */ }
    document.cookie = STORE + "=" + id + "; path=/; max-age=31536000; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
    return id;
  }

  var bid = browserId();

  // Sends one event; resolves to the connector's answer ({accepted: 1, ...} or {error}).
  function track(type, properties) {
    var body = {type: type, browser_id: bid, event_id: randomId(), properties: properties || {}};
    if (identity) { body.identity = identity; }
    return fetch(endpoint, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      keepalive: true,
      headers: {"Content-Type": "application/json", "X-DCB-Key": key},
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok && window.console) { console.warn("dcb:", type, answer.error); }
        answer.status = response.status;
        return answer;
      });
    }, function (error) {
      return {status: 0, error: String(error)};
    });
  }

  function identify(token) { identity = token || null; }

  // Declarative tracking: a click on [data-dcb-track] sends that event.
  document.addEventListener("click", function (event) {
    var target = event.target && event.target.closest && event.target.closest("[data-dcb-track]");
    if (!target) { return; }
    var properties = {};
    try { properties = JSON.parse(target.getAttribute("data-dcb-properties") || "{}"); }
    catch (e) { if (window.console) { console.warn("dcb: data-dcb-properties is not JSON"); } }
    track(target.getAttribute("data-dcb-track"), properties);
  }, true);

  var api = {loaded: true, track: track, identify: identify, browserId: function () { return bid; }};
  var queued = window.dcbq || [];
  window.dcb = api;
  window.dcbq = {push: function (call) { api[call[0]].apply(null, call.slice(1)); }};
  for (var i = 0; i < queued.length; i++) { window.dcbq.push(queued[i]); }
})();
