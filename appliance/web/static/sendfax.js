// Sent fax page: live progress. Polls the job's JSON every 2 s while the fax is under way and
// writes every value with textContent (the far end's CSI is the far end's choice, never markup).
// When the job ends, the page reloads once to show the whole report, attempts and T.30 trace.
(function () {
  "use strict";
  var root = document.getElementById("job-live");
  if (!root || !window.fetch || root.getAttribute("data-final") === "yes") { return; }
  var url = root.getAttribute("data-poll");
  var CLASSES = /^state-[a-z_]+$/;

  function set(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function show(job) {
    var state = document.getElementById("job-state");
    if (state) {
      state.textContent = job.state_label;
      state.className = "badge " + (CLASSES.test(job.state_class) ? job.state_class : "state-unknown");
    }
    set("job-confirmed", String(job.pages_confirmed));
    set("job-pages", String(job.pages));
    if (job.words) { set("job-words", job.words); }
    set("job-csi", job.remote_ident || "\u2014");
    var cancel = document.getElementById("cancel-form");
    if (cancel && !job.cancellable) { cancel.hidden = true; }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { window.setTimeout(poll, 2000); return; }
        show(job);
        if (job.final) { window.location.reload(); return; }
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
}());
