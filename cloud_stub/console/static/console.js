// The review console's only script: keeps "time left" current and puts the keyboard
// focus on a form's problem. Every page works without it (docs/adr/0015-review-console.md).
"use strict";
(function () {
  function describe(ms) {
    var minutes = Math.ceil(Math.abs(ms) / 60000);
    var days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60);
    var text = days ? days + " d " + hours + " h" :
      hours ? hours + " h " + (minutes % 60) + " min" : minutes + " min";
    return ms < 0 ? "overdue by " + text : text + " left";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (!isNaN(due)) {
        el.textContent = describe(due - now);
        el.classList.toggle("overdue", due < now);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 30000);
    [["decide-problem", "reason"], ["reissue-problem", "reissue-reason"]].forEach(function (ids) {
      var problem = document.getElementById(ids[0]);
      var reason = document.getElementById(ids[1]);
      if (problem && reason) { reason.focus(); }
    });
  });
})();
