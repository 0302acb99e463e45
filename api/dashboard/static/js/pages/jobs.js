// Jobs list: filters in the URL, auto-refresh in place while anything is unfinished.
import "../layout.js";
import { DASHBOARD_API, api, itemsOf } from "../api.js";
import { datasetNames, datasetViews } from "../datasets-model.js";
import { $, el, progressBar, replaceChildren, stateBadge } from "../dom.js";
import { absoluteTime, percent, points, relativeTime, shortId } from "../format.js";
import { jobView, stageLabel } from "../jobs-model.js";
import { isBlocking, warningTitle } from "../warnings.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 3000;
const IDLE_REFRESH_MS = 15000;

const form = $("#filters");
const body = $("#jobs-body");
let offset = 0;
let timer = null;
let inFlight = null;
let names = new Map();

// Filters match exactly, so offer the known values (and keep one from the URL).
async function fillFilterOptions() {
  const [options, datasets] = await Promise.all([
    api("/options", { base: DASHBOARD_API }).catch(() => null),
    api("/datasets").catch(() => null),
  ]);
  names = await datasetNames(api);
  const add = (select, values) => {
    const have = new Set(Array.from(select.options, (o) => o.value));
    for (const [value, text] of values) {
      if (!have.has(value)) select.append(el("option", { value }, text));
      have.add(value);
    }
  };
  add(form.elements.arch, (options?.archs || []).map((a) => [a, a]));
  add(form.elements.dataset, datasets ? datasetViews(datasets).map((d) => [d.reference, d.name]) : []);
}

function ensureOption(select, value) {
  if (value && !Array.from(select.options).some((o) => o.value === value)) {
    select.append(el("option", { value }, value));
  }
}

function filtersFromUrl() {
  const query = new URLSearchParams(location.search);
  for (const name of ["status", "arch", "dataset"]) {
    ensureOption(form.elements[name], query.get(name));
    form.elements[name].value = query.get(name) || "";
  }
  offset = Math.max(0, Number(query.get("offset")) || 0);
}

function currentFilters() {
  const filters = {};
  for (const name of ["status", "arch", "dataset"]) {
    const value = form.elements[name].value.trim();
    if (value) filters[name] = value;
  }
  return filters;
}

function syncUrl() {
  const query = new URLSearchParams(currentFilters());
  if (offset) query.set("offset", String(offset));
  const text = query.toString();
  history.replaceState(null, "", text ? `?${text}` : location.pathname);
}

function cell(label, content, className) {
  return el("td", { "data-label": label, class: className }, content);
}

function blockingWarning(job) {
  return job.warnings.find(isBlocking) || null;
}

function accuracyCell(job) {
  if (job.accuracyAfter == null) return "—";
  const delta = job.accuracyBefore == null ? null : job.accuracyAfter - job.accuracyBefore;
  const base = job.baselineAccuracy == null ? null : job.accuracyAfter - job.baselineAccuracy;
  const blocking = blockingWarning(job);
  return [
    blocking
      ? el("span", { class: "bad", title: blocking.message || warningTitle(blocking) }, percent(job.accuracyAfter))
      : percent(job.accuracyAfter),
    delta == null ? null : el("span", { class: "sub", title: "against LoRITa's uncompressed model" }, points(delta)),
    base == null
      ? null
      : el(
          "span",
          { class: "sub baseline-delta", title: `against the plain N = 1 model (${percent(job.baselineAccuracy, 2)})` },
          `${points(base)} vs N = 1`,
        ),
  ];
}

// A saving is green only when the model is worth having; one that did not learn gets none.
function dropCell(fraction, job) {
  if (fraction == null) return "—";
  if (Math.abs(fraction) < 0.005) return "0%";
  const text = fraction > 0 ? `−${percent(fraction, 0)}` : `+${percent(-fraction, 0)}`;
  const win = fraction > 0 && !blockingWarning(job);
  return el(
    "span",
    { class: win ? "good" : "", title: win ? "change against the uncompressed model" : "no saving: the model did not learn" },
    text,
  );
}

function stateCell(job) {
  const blocking = blockingWarning(job);
  if (!blocking) return stateBadge(job.state);
  return [
    stateBadge(job.state),
    el("span", { class: "warn-badge", title: [blocking.message, blocking.advice].filter(Boolean).join(" ") }, "Did not learn"),
  ];
}

function row(job) {
  const link = el("a", { href: `/jobs/${encodeURIComponent(job.id)}`, class: "job-link" }, shortId(job.id));
  const progress =
    job.state === "running" || job.state === "queued"
      ? [
          progressBar(job.progress, `Progress of job ${shortId(job.id)}`),
          el("span", { class: "sub" }, `${percent(job.progress, 0)} ${stageLabel(job.stage)}`.trim()),
        ]
      : job.state === "failed"
        ? el("span", { class: "sub failure-text", title: job.failureReason || "" }, job.failureReason || "Failed")
        : progressBar(job.progress, `Progress of job ${shortId(job.id)}`);
  const blocking = blockingWarning(job);
  return el(
    "tr",
    { "data-job-id": job.id, "data-state": job.state, class: blocking ? "did-not-learn" : null, "data-warnings": job.warnings.map((w) => w.kind).join(" ") || null },
    el("th", { scope: "row", "data-label": "Job" }, link),
    cell("State", stateCell(job)),
    cell("Model", job.arch),
    cell("Dataset", names.get(job.dataset) || job.dataset, "wrap-anywhere"),
    cell("N", String(job.factor), "num"),
    cell("Progress", progress, "progress-col"),
    cell("Accuracy", accuracyCell(job), "num"),
    cell("Params", dropCell(job.paramsDrop, job), "num"),
    cell("FLOPs", dropCell(job.flopsDrop, job), "num"),
    cell("Created", el("time", { datetime: job.createdAt, title: absoluteTime(job.createdAt) }, relativeTime(job.createdAt))),
  );
}

function render(data) {
  const jobs = itemsOf(data).map(jobView);
  const total = typeof data?.total === "number" ? data.total : null;
  // Rows are rebuilt on every refresh: keep keyboard focus on the same job's link.
  const focusedJob = document.activeElement?.closest?.("tr[data-job-id]")?.dataset.jobId;
  replaceChildren(body, jobs.map(row));
  if (focusedJob) body.querySelector(`tr[data-job-id="${CSS.escape(focusedJob)}"] a`)?.focus();
  const empty = $("#jobs-empty");
  const filtered = Object.keys(currentFilters()).length > 0;
  empty.hidden = jobs.length > 0;
  if (!jobs.length) {
    replaceChildren(
      empty,
      filtered ? "No jobs match these filters." : ["No jobs yet. ", el("a", { href: "/jobs/new" }, "Submit the first one"), "."],
    );
  }
  const pager = $("#pager");
  const hasMore = total != null ? offset + jobs.length < total : jobs.length === PAGE_SIZE;
  pager.hidden = offset === 0 && !hasMore;
  $("#page-prev").disabled = offset === 0;
  $("#page-next").disabled = !hasMore;
  $("#page-info").textContent = jobs.length
    ? `${offset + 1}–${offset + jobs.length}${total != null ? ` of ${total}` : ""}`
    : "";
  $("#jobs-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  return jobs;
}

async function refresh() {
  clearTimeout(timer);
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;
  const query = new URLSearchParams({ ...currentFilters(), limit: String(PAGE_SIZE), offset: String(offset) });
  let delay = IDLE_REFRESH_MS;
  try {
    const jobs = render(await api(`/jobs?${query}`, { signal: controller.signal }));
    if (jobs.some((job) => !job.final)) delay = REFRESH_MS;
  } catch (error) {
    if (error.name === "AbortError") return;
    $("#jobs-updated").textContent = `Could not refresh: ${error.message}`;
  }
  // Poll only while the page is visible; a hidden tab catches up when shown again.
  if (!document.hidden) timer = setTimeout(refresh, delay);
}

let debounce = null;
form.addEventListener("input", () => {
  clearTimeout(debounce);
  debounce = setTimeout(() => {
    offset = 0;
    syncUrl();
    refresh();
  }, 250);
});
form.addEventListener("submit", (event) => event.preventDefault());
$("#page-prev").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE_SIZE);
  syncUrl();
  refresh();
});
$("#page-next").addEventListener("click", () => {
  offset += PAGE_SIZE;
  syncUrl();
  refresh();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

async function start() {
  await fillFilterOptions();
  filtersFromUrl();
  refresh();
}

start();
