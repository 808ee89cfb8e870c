// Progressive enhancement only: every page works without this file.
// 1. Drafts: what is typed in a form marked data-draft is kept in this tab's sessionStorage
//    until the page confirms it was sent, so an ended session or a lost connection loses
//    nothing. 2. A form is sent once: its button is disabled while it is being sent.
(function () {
  "use strict";
  var PENDING = "broen:pending-draft";

  function storageKey(form) { return "broen:draft:" + form.dataset.draft; }

  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (element) {
      return (element.tagName === "TEXTAREA" || element.type === "text" || element.type === "") &&
        element.name && element.type !== "hidden";
    });
  }

  function save(form) {
    var values = {};
    fields(form).forEach(function (element) { values[element.name] = element.value; });
    try { sessionStorage.setItem(storageKey(form), JSON.stringify(values)); } catch (e) { /* full or off */ }
  }

  function restore(form) {
    var stored;
    try { stored = JSON.parse(sessionStorage.getItem(storageKey(form)) || "null"); } catch (e) { stored = null; }
    if (!stored) { return; }
    fields(form).forEach(function (element) {
      if (!element.value && stored[element.name]) { element.value = stored[element.name]; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // The page names the form it confirms; only that form's draft is done with.
    var sent = document.querySelector("[data-sent]");
    if (sent && sent.dataset.sent === sessionStorage.getItem(PENDING)) {
      sessionStorage.removeItem("broen:draft:" + sent.dataset.sent);
      sessionStorage.removeItem(PENDING);
    }
    Array.prototype.forEach.call(document.querySelectorAll("form[data-draft]"), function (form) {
      restore(form);
      form.addEventListener("input", function () { save(form); });
      form.addEventListener("submit", function () {
        save(form);
        sessionStorage.setItem(PENDING, form.dataset.draft);
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("form[method=post]"), function (form) {
      form.addEventListener("submit", function () {
        Array.prototype.forEach.call(form.querySelectorAll("button[type=submit]"), function (button) {
          // After this submit event, so the button's own value still goes with the form.
          setTimeout(function () { button.disabled = true; }, 0);
        });
      });
    });
  });
}());
