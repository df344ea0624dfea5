// The status page's refresh and its folded steps. The server renders (and escapes) every fragment:
// this only swaps them in. A refresh asks with If-None-Match, so an unchanged page is a 304 with no
// body; a step's gates are fetched when it is opened, and kept open (and re-validated) across refreshes.
(function () {
  "use strict";
  var main = document.getElementById("content");
  var toggle = document.getElementById("refresh-toggle");
  var status = document.getElementById("refresh-status");
  if (!main || !toggle || !window.fetch) {
    return;
  }
  var seconds = parseInt(main.getAttribute("data-refresh-seconds"), 10);
  var enabled = true;
  var timer = null;
  var busy = false;
  var mainTag = main.getAttribute("data-etag"); // ETag of the <main> content shown (set by the server at first)
  var steps = {}; // data-key -> {open: bool, etag: string, html: string}, for steps the user opened or closed
  var applying = false; // toggles we cause ourselves are not the user's choice

  function partialUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    return url.toString();
  }

  function say(text) {
    status.textContent = text;
  }

  // GET with If-None-Match; resolves to {changed, etag, html}.
  function conditional(url, etag) {
    var headers = { Accept: "text/html" };
    if (etag) {
      headers["If-None-Match"] = etag;
    }
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: headers }).then(function (response) {
      if (response.status === 304) {
        return { changed: false, etag: etag, html: null };
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text().then(function (html) {
        return { changed: true, etag: response.headers.get("ETag"), html: html };
      });
    });
  }

  function bodyOf(details) {
    return details.querySelector(".step-body");
  }

  // Fetch (or re-validate) an open step's gates into its body.
  function loadStep(details) {
    var key = details.getAttribute("data-key");
    var url = details.getAttribute("data-fragment");
    var known = steps[key] || { open: true, etag: null, html: null };
    steps[key] = known;
    if (known.html === null && details.querySelector("table.gates")) {
      return Promise.resolve(); // rendered open by the server with its gates
    }
    if (known.html !== null) {
      bodyOf(details).innerHTML = known.html; // the last copy at once, then ask whether it changed
    }
    details.setAttribute("aria-busy", "true");
    return conditional(url, known.etag).then(function (got) {
      if (got.changed) {
        known.etag = got.etag;
        known.html = got.html;
        bodyOf(details).innerHTML = got.html;
      }
    }).then(function () {
      details.removeAttribute("aria-busy");
    }, function (err) {
      details.removeAttribute("aria-busy");
      say("Could not load the step (" + err.message + ").");
    });
  }

  // After a swap: reopen what the user opened, fold what they folded.
  function restoreSteps() {
    var pending = [];
    applying = true;
    Array.prototype.forEach.call(main.querySelectorAll("details.step"), function (details) {
      var known = steps[details.getAttribute("data-key")];
      if (known) {
        details.open = known.open;
      }
      if (details.open && known && known.open) {
        pending.push(loadStep(details));
      }
    });
    applying = false;
    return Promise.all(pending);
  }

  main.addEventListener("toggle", function (event) {
    var details = event.target;
    if (applying || !details.matches || !details.matches("details.step")) {
      return;
    }
    var key = details.getAttribute("data-key");
    steps[key] = steps[key] || { open: details.open, etag: null, html: null };
    steps[key].open = details.open;
    if (details.open && !details.querySelector("table.gates")) {
      loadStep(details);
    }
  }, true);

  function schedule() {
    window.clearTimeout(timer);
    if (enabled && seconds > 0) {
      timer = window.setTimeout(refresh, seconds * 1000);
    }
  }

  function refresh() {
    if (busy || document.hidden) {
      schedule();
      return;
    }
    busy = true;
    conditional(partialUrl(), mainTag)
      .then(function (got) {
        if (got.changed) {
          mainTag = got.etag;
          main.innerHTML = got.html;
          main.setAttribute("data-refreshed", String(Date.now()));
          return restoreSteps();
        }
        // Nothing new in the summary: the open steps may still have changed.
        main.setAttribute("data-unchanged", String(Date.now()));
        return Promise.all(Array.prototype.filter.call(main.querySelectorAll("details.step[open]"), function (d) {
          var known = steps[d.getAttribute("data-key")];
          return known && known.html !== null;
        }).map(loadStep));
      })
      .then(function () {
        say("");
      }, function (err) {
        say("Refresh failed (" + err.message + "); retrying.");
      })
      .then(function () {
        busy = false;
        schedule();
      });
  }

  if (!(seconds > 0)) {
    return;
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
