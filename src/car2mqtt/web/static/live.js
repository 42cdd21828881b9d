// car2mqtt web UI: live updates without a reload, and nothing else. No library, no build.
// The server sends a nudge (server-sent events) whenever the bridge learns something; the page
// then fetches itself and swaps in its [data-live] parts, so forms being filled in stay as they are.
(function () {
  "use strict";
  var source = document.documentElement.getAttribute("data-events");
  var badge = document.getElementById("live");
  if (!source || !window.EventSource || !document.querySelector("[data-live]")) { return; }
  var busy = false, again = false;
  function say(text) { if (badge) { badge.textContent = text; } }
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (part) {
          var fresh = part.id && doc.getElementById(part.id);
          if (fresh) { part.replaceWith(document.importNode(fresh, true)); }
        });
      })
      .catch(function () { /* the next nudge tries again */ })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var events = new EventSource(source, { withCredentials: true });
  events.addEventListener("open", function () { say("live"); });
  events.addEventListener("error", function () { say("reconnecting…"); });
  events.addEventListener("update", refresh);
})();
