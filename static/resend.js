// Progressive enhancement for the "Send a new code" buttons (the second step's text-message code, and confirming a
// phone). The server puts in data-resend-after how many seconds remain until it accepts another send; this keeps the
// button disabled until then and counts the wait down in the hint. Without JavaScript the button works at once and
// the server answers an early press with the same wait in words, so nothing here is needed for the page to work.
"use strict";

function inWords(seconds) {
  if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return minutes === 1 ? "about 1 minute" : `about ${minutes} minutes`;
}

for (const hint of document.querySelectorAll("[data-resend-after]")) {
  const form = hint.closest("form");
  const button = form?.querySelector("[data-resend-button]");
  const countdown = hint.querySelector("[data-resend-countdown]");
  const status = form?.querySelector("[data-resend-status]");
  const seconds = Number.parseInt(hint.dataset.resendAfter, 10);
  if (!button || !countdown || !(seconds > 0)) {
    continue;
  }
  // Timers are late in background tabs, so the wait is measured against the clock, not counted in ticks.
  const until = Date.now() + seconds * 1000;
  button.disabled = true;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left > 0) {
      countdown.textContent = inWords(left);
      setTimeout(tick, 250);
      return;
    }
    const ready = hint.dataset.readyText ?? "You can ask for a new code now.";
    hint.textContent = ready;
    button.disabled = false;
    // The hint changes every second, so it is not a live region; only the end of the wait is announced.
    if (status) status.textContent = ready;
  };
  tick();
}
