// Small client for the JSON API. Same-origin requests carry the session cookie;
// a 401 means "not signed in" and sends the browser to the sign-in page.

export const API = "/api/v1";
// Dashboard-only endpoints (the new-job form's options).
export const DASHBOARD_API = "/dashboard/api";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  // FastAPI/pydantic validation errors: [{loc: ["body", "train", "lr"], msg, type}, ...]
  get validationErrors() {
    const detail = this.body && this.body.detail;
    return Array.isArray(detail) ? detail : [];
  }
}

export function signInUrl() {
  const next = location.pathname + location.search;
  return next === "/" ? "/signin" : `/signin?next=${encodeURIComponent(next)}`;
}

export function goToSignIn() {
  location.assign(signInUrl());
}

// A readable sentence from whatever error body the server sent.
export function messageOf(body, status) {
  if (body && typeof body === "object") {
    const detail = body.detail ?? body.message ?? body.error;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) {
      return detail
        .map((e) => (e.loc ? `${e.loc.filter((p) => p !== "body").join(".")}: ${e.msg}` : e.msg))
        .join("; ");
    }
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 500);
  return `The server answered ${status}.`;
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return await response.text();
}

export async function api(
  path,
  { method = "GET", json, body, signal, signInOn401 = true, base = API } = {},
) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(base + path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "Cannot reach the server. Check that it is running.", null);
  }
  const data = await readBody(response);
  if (response.status === 401 && signInOn401) {
    goToSignIn();
  }
  if (!response.ok) throw new ApiError(response.status, messageOf(data, response.status), data);
  return data;
}

// Upload with progress: fetch() cannot report upload progress, XMLHttpRequest can.
export function uploadWithProgress(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", API + path);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = xhr.responseText;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON: keep the text */
      }
      if (xhr.status === 401) goToSignIn();
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, messageOf(data, xhr.status), data));
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "The upload was interrupted: the server closed the connection.", null)),
    );
    xhr.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled.", null)));
    xhr.send(formData);
  });
}

// Lists may come bare or wrapped ({items: [...], total}); accept both.
export function itemsOf(data, key = "items") {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && Array.isArray(data.jobs)) return data.jobs;
  if (data && Array.isArray(data.datasets)) return data.datasets;
  return [];
}
