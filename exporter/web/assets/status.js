// Refreshes the status page's <main> every few seconds without a full reload. The server
// renders (and escapes) the fragment: this only swaps it in. Same URL, so filters are kept.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var toggle = document.getElementById("refresh-toggle");
  var status = document.getElementById("refresh-status");
  if (!main || !toggle || !window.fetch) {
    return;
  }
  var seconds = parseInt(main.getAttribute("data-refresh-seconds"), 10);
  if (!(seconds > 0)) {
    return;
  }
  var enabled = true;
  var timer = null;
  var busy = false;

  function partialUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    return url.toString();
  }

  function say(text) {
    status.textContent = text;
  }

  function schedule() {
    window.clearTimeout(timer);
    if (enabled) {
      timer = window.setTimeout(refresh, seconds * 1000);
    }
  }

  function refresh() {
    if (busy || document.hidden) {
      schedule();
      return;
    }
    busy = true;
    fetch(partialUrl(), { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        main.innerHTML = html;
        main.setAttribute("data-refreshed", String(Date.now()));
        say("");
      })
      .catch(function (err) {
        say("Refresh failed (" + err.message + "); retrying.");
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  toggle.addEventListener("click", function () {
    enabled = !enabled;
    toggle.textContent = enabled ? "Pause auto-refresh" : "Resume auto-refresh";
    if (enabled) {
      refresh();
    } else {
      window.clearTimeout(timer);
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && enabled) {
      refresh();
    }
  });
  toggle.parentNode.hidden = false;
  schedule();
})();
