// Keyboard shortcuts for the review console. They only fill in and submit the page's plain forms, which work
// the same without this script.
//   item page: 1-9, 0 pick a category; a / b / r pick allow / block / review; Enter decides; c claims
//   queue page: n claims the next item
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" && target.type !== "radio" || target.tagName === "TEXTAREA")) return;
    var decide = document.getElementById("decide-form");
    if (decide) {
      if (event.key === "Enter") {
        event.preventDefault();
        if (decide.reportValidity()) decide.requestSubmit();
        return;
      }
      var pick = decide.querySelector('input[type="radio"][data-key="' + CSS.escape(event.key.toLowerCase()) + '"]');
      if (pick) {
        event.preventDefault();
        pick.checked = true;
        pick.focus();
      }
      return;
    }
    var claim = document.getElementById("claim-form");
    if (claim && event.key === "c") { event.preventDefault(); claim.requestSubmit(); return; }
    var next = document.getElementById("claim-next");
    if (next && event.key === "n") { event.preventDefault(); next.requestSubmit(); }
  });
})();
