// The system page's Update card: send the bundle as the raw body (upload progress, no multipart
// copy on the box), then follow /system/update/status until the install ends or the box restarts.
// Without this script the form posts as multipart and the page shows the state on reload.
// (No inline script: the CSP is default-src 'self'.)
(function () {
  var form = document.getElementById("update-form");
  var box = document.getElementById("update-progress");
  if (!box) { return; }
  var bar = document.getElementById("update-bar");
  var phase = document.getElementById("update-phase");
  var message = document.getElementById("update-message");
  var result = document.getElementById("update-result");
  var statusUrl = box.getAttribute("data-status-url");
  var token = document.querySelector('meta[name="csrf-token"]');
  var wasRebooting = false;

  function show(phaseText, messageText, percent) {
    box.hidden = false;
    phase.textContent = phaseText;
    message.textContent = messageText || "";
    if (typeof percent === "number") { bar.value = percent; } else { bar.removeAttribute("value"); }
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (s) {
      if (s.busy || s.pending) {
        wasRebooting = s.phase === "rebooting";
        show(s.pending && !s.busy ? "Waiting for the installer" : s.words, s.message, s.percent);
        setTimeout(poll, 2000);
      } else {
        box.hidden = true;
        if (s.result) { result.textContent = s.result; }
        if (form) { form.hidden = false; }
      }
    }).catch(function () {
      // the box is restarting (or this page lost it for a moment): keep asking
      show("Restarting", wasRebooting ? "The box is restarting into the new version; this page answers again in a few minutes." : "No answer from the box; trying again.", null);
      setTimeout(poll, 5000);
    });
  }

  if (box.getAttribute("data-busy") === "yes") { poll(); }
  if (!form || !window.XMLHttpRequest) { return; }

  form.addEventListener("submit", function (ev) {
    var input = form.querySelector('input[type="file"]');
    if (!input || !input.files || !input.files.length) { return; }
    ev.preventDefault();
    var file = input.files[0];
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("X-File-Name", file.name);
    if (token) { xhr.setRequestHeader("X-CSRF-Token", token.getAttribute("content")); }
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) { show("Uploading", file.name, Math.floor(100 * e.loaded / e.total)); }
    };
    xhr.onload = function () {
      var reply = null;
      try { reply = JSON.parse(xhr.responseText); } catch (err) { reply = null; }
      if (xhr.status === 200 && reply && reply.ok) {
        form.hidden = true;
        show("Waiting for the installer", file.name, 0);
        setTimeout(poll, 1000);
      } else {
        box.hidden = true;
        result.textContent = (reply && reply.error) ? reply.error : "The upload failed (HTTP " + xhr.status + ").";
      }
    };
    xhr.onerror = function () { box.hidden = true; result.textContent = "The upload was interrupted. Nothing was changed."; };
    show("Uploading", file.name, 0);
    xhr.send(file);
  });
})();
