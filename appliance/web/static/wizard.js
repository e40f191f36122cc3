// The test fax page: while the daemon is still sending, look again every 3 seconds.
// (No inline script: the CSP is default-src 'self'.)
(function () {
  var box = document.getElementById("test-fax");
  if (box && box.getAttribute("data-state") === "running") {
    setTimeout(function () { window.location.reload(); }, 3000);
  }
})();
