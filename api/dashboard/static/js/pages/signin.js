import { ApiError, api } from "../api.js";
import { $ } from "../dom.js";

// Only same-site paths: "next" must never send the browser to another origin.
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function showError(message) {
  const error = $("#token-error");
  const input = $("#token");
  error.textContent = message;
  error.hidden = !message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  if (message) input.focus();
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) {
    showError("Enter your access token.");
    return;
  }
  const button = event.submitter || $("#signin-form button[type=submit]");
  button.disabled = true;
  try {
    await api("/session", { method: "POST", json: { token }, signInOn401: false });
    location.assign(nextPath());
  } catch (error) {
    const message =
      error instanceof ApiError && (error.status === 401 || error.status === 403)
        ? "That token is not valid. Check it, or create one with lorita token create NAME."
        : error.message;
    showError(message);
  } finally {
    button.disabled = false;
  }
});

// A sign-in link (`/login#token=...`, printed by `lorita serve`) carries the token in
// the fragment, which never reaches the server. It is not used by itself: the page
// names the account and waits for a click, so a link with someone else's token
// cannot sign a visitor in unnoticed (login CSRF).
async function offerLinkToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return false;
  history.replaceState(null, "", location.pathname + location.search);
  $("#token").value = token.trim();
  const button = $("#signin-form button[type=submit]");
  const response = await fetch("/api/v1/me", {
    headers: { Authorization: `Bearer ${token.trim()}`, Accept: "application/json" },
    credentials: "omit",
  }).catch(() => null);
  if (!response || !response.ok) {
    showError("The sign-in link's token is not valid. Ask for a new link.");
    return true;
  }
  const { name } = await response.json();
  const note = document.createElement("p");
  note.id = "link-account";
  note.textContent = `This link signs you in as "${name}". Continue only if that is your account.`;
  $("#signin-form").prepend(note);
  button.textContent = `Sign in as ${name}`;
  button.focus();
  return true;
}

offerLinkToken().then((offered) => {
  if (!offered) $("#token").focus();
});
