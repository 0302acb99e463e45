// Shared page chrome: sign-out button, status toast, confirmation dialog.
import { api } from "./api.js";
import { $ } from "./dom.js";

let toastTimer = null;

export function toast(message, kind = "info", ms = 4000) {
  const box = $("#toast");
  if (!box) return;
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    box.hidden = true;
  }, ms);
}

// Resolve true when the person confirms in the page's <dialog>, false otherwise.
export function confirmDialog({ title, text, confirmLabel = "Confirm", danger = true }) {
  const dialog = $("#confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") {
    return Promise.resolve(window.confirm(`${title}\n\n${text}`));
  }
  $("#confirm-title", dialog).textContent = title;
  $("#confirm-text", dialog).textContent = text;
  const ok = $("#confirm-ok", dialog);
  ok.textContent = confirmLabel;
  ok.classList.toggle("danger", danger);
  ok.classList.toggle("primary", !danger);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

function setUpSignOut() {
  const button = $("#sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("/session", { method: "DELETE", signInOn401: false });
    } catch {
      // Signed out already, or the server is gone: the sign-in page is right either way.
    }
    location.assign("/signin");
  });
}

async function showUser() {
  const slot = $("#user-name");
  if (!slot) return;
  try {
    const me = await api("/me", { signInOn401: false });
    slot.textContent = me?.name ? `Signed in as ${me.name}` : "";
  } catch {
    // The page's own requests deal with a missing sign-in.
  }
}

setUpSignOut();
showUser();
