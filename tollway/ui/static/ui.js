// Tollway admin UI: the few things a server-rendered page cannot do by itself.
// Everything works without this file except the copy button and the live countdowns.
(function () {
  "use strict";

  function copyText(input, status) {
    var done = function (ok) {
      if (status) {
        status.textContent = ok ? "Copied to the clipboard." : "Could not copy: select the value and copy it by hand.";
      }
    };
    input.focus();
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () {
        done(document.execCommand && document.execCommand("copy"));
      });
    } else {
      done(document.execCommand && document.execCommand("copy"));
    }
  }

  function span(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60), hours = Math.floor(seconds / 3600), days = Math.floor(seconds / 86400);
    if (hours < 1) return minutes + " min";
    if (days < 1) return minutes % 60 ? hours + " h " + (minutes % 60) + " min" : hours + " h";
    return hours % 24 ? days + " d " + (hours % 24) + " h" : days + " d";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-countdown"));
      if (!isNaN(at)) el.textContent = at > now ? span((at - now) / 1000) : "now (reload to see)";
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) {
      copyText(document.getElementById(button.getAttribute("data-copy")), document.querySelector("[data-copy-status]"));
      return;
    }
    var back = event.target.closest("[data-back]");
    if (back && window.history.length > 1) {
      event.preventDefault();
      window.history.back();
    }
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  // Keep an open form from being sent twice by a double click.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.method.toLowerCase() !== "post") return;
    if (form.dataset.sending) { event.preventDefault(); return; }
    form.dataset.sending = "1";
    setTimeout(function () { delete form.dataset.sending; }, 3000);
  });

  // After a failed save the page comes back with the error in the form that caused it,
  // which may be far down the page: bring the error to the top of the view and put the
  // cursor in the first field it names (or the form's first field).
  function showProblem() {
    var problem = document.querySelector(".problem[role=alert]");
    if (!problem) return;
    var form = problem.closest("form") || problem.parentElement;
    var details = problem.closest("details");
    if (details) details.open = true;
    problem.scrollIntoView({block: "start"});
    var field = (form && form.querySelector("[aria-invalid=true]")) ||
      document.querySelector("[aria-invalid=true]") ||
      (form && form.querySelector("input:not([type=hidden]), select, textarea"));
    if (field) field.focus({preventScroll: true});
  }

  showProblem();
  tick();
  setInterval(tick, 1000);
})();
