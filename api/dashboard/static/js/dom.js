// Tiny DOM helpers: build elements without innerHTML, so server data is never parsed as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

// Job state -> badge element.
const STATE_LABELS = {
  queued: "Queued",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
};

export function stateBadge(state) {
  const label = STATE_LABELS[state] || state || "unknown";
  return el("span", { class: `badge state-${state || "unknown"}` }, label);
}

export function progressBar(fraction, label) {
  const value = Math.max(0, Math.min(1, Number(fraction) || 0));
  const pct = Math.round(value * 100);
  const bar = el(
    "div",
    {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": pct,
      "aria-label": label || "Progress",
    },
    el("span"),
  );
  bar.firstChild.style.width = `${pct}%`;
  return bar;
}

export function setProgress(bar, fraction) {
  const pct = Math.round(Math.max(0, Math.min(1, Number(fraction) || 0)) * 100);
  bar.setAttribute("aria-valuenow", String(pct));
  bar.firstElementChild.style.width = `${pct}%`;
}
