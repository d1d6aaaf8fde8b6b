// Progressive enhancement for the recovery-codes page: shows a "Copy" button for each element named by a button's
// data-copy attribute. Without JavaScript (or without the clipboard API) the button stays hidden and the codes can
// still be selected by hand or downloaded as a file.
"use strict";

for (const button of document.querySelectorAll("button[data-copy]")) {
  const source = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  if (!source || !navigator.clipboard) {
    continue;
  }
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(source.textContent.trim() + "\n");
      if (status) status.textContent = "Copied. Paste them into your password manager now.";
    } catch {
      if (status) status.textContent = "Copying did not work here: select the codes and copy them by hand.";
    }
  });
}
