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

$("#token").focus();
