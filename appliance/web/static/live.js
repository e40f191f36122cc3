// Live dashboard: calls in progress and line states from /events (server-sent events).
// Every value is written with textContent: caller names and numbers are never parsed as HTML.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) { return; }

  function cell(row, text, label) {
    var td = document.createElement("td");
    td.textContent = text;
    if (label) { td.setAttribute("data-label", label); }
    row.appendChild(td);
    return td;
  }

  function showCalls(calls) {
    var body = document.getElementById("calls-body");
    var none = document.getElementById("calls-none");
    var table = document.getElementById("calls-table");
    if (!body) { return; }
    while (body.firstChild) { body.removeChild(body.firstChild); }
    calls.forEach(function (c) {
      var tr = document.createElement("tr");
      var from = cell(tr, c.caller, "From");
      if (c.caller_name) {
        var sub = document.createElement("span");
        sub.className = "sub";
        sub.textContent = c.caller_name;
        from.appendChild(sub);
      }
      cell(tr, c.called, "To");
      cell(tr, c.line, "Line");
      cell(tr, c.mode, "Mode");
      cell(tr, c.rate, "Rate");
      cell(tr, c.ecm, "ECM");
      cell(tr, c.page, "Page");
      cell(tr, c.since, "Since");
      body.appendChild(tr);
    });
    table.hidden = calls.length === 0;
    none.hidden = calls.length !== 0;
  }

  function showLines(lines) {
    lines.forEach(function (l) {
      var row = document.querySelector('[data-line="' + CSS.escape(l.key) + '"]');
      if (!row) { return; }
      var state = row.querySelector(".line-state");
      var detail = row.querySelector(".line-detail");
      if (state) {
        state.textContent = l.state;
        state.className = "badge line-state tone-" + (["ok", "bad", "unknown"].indexOf(l.tone) >= 0 ? l.tone : "unknown");
      }
      if (detail) { detail.textContent = l.detail; }
    });
  }

  function showQueue(q) {
    if (!q) { return; }
    var set = function (id, n) {
      var el = document.getElementById(id);
      if (el && typeof n === "number") { el.textContent = String(n); }
    };
    set("queue-queued", (q.queued || 0) + (q.delivering || 0));
    set("queue-retrying", q.failed_retrying);
    set("queue-dead", q.dead);
  }

  var es = new EventSource(root.getAttribute("data-events"));
  es.addEventListener("status", function (ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    var down = document.getElementById("daemon-down");
    if (down) { down.hidden = !!data.daemon; }
    showCalls(data.calls || []);
    showLines(data.lines || []);
    showQueue(data.queue);
    var stamp = document.getElementById("live-stamp");
    if (stamp) { stamp.textContent = "live"; }
  });
  es.onerror = function () {
    var stamp = document.getElementById("live-stamp");
    if (stamp) { stamp.textContent = "reconnecting"; }
  };
}());
