// Job detail: status, live training curves from the event stream, and the
// compression result (tables, curves, spectra, downloads) once it is done.
import { ApiError, API, api, itemsOf } from "../api.js";
import { $, replaceChildren, setProgress, stateBadge } from "../dom.js";
import { absoluteTime, duration, percent, relativeTime, shortId } from "../format.js";
import { datasetNames } from "../datasets-model.js";
import { jobView, stageLabel } from "../jobs-model.js";
import { confirmDialog, toast } from "../layout.js";
import { renderPretrained } from "../pretrained.js";
import { renderComparisons } from "../job/comparisons.js";
import { renderCurve } from "../job/curves.js";
import { renderArtifacts } from "../job/downloads.js";
import { renderRanks, renderSpectra } from "../job/layers.js";
import { renderBaselineNote, renderSummary } from "../job/summary.js";
import { addEpoch, hasEpochs, renderTraining } from "../job/training.js";
import { renderWarnings } from "../job/warnings-banner.js";

const jobId = decodeURIComponent(location.pathname.split("/").filter(Boolean).at(-1) || "");
const JOB_PATH = `/jobs/${encodeURIComponent(jobId)}`;
const POLL_MS = 4000;

let job = null;
let names = new Map();
let stream = null;
let pollTimer = null;
let resultShown = false;

// ---------- status ----------

function renderStatus() {
  $("#crumb-id").textContent = shortId(job.id);
  const dataset = names.get(job.dataset) || job.dataset;
  $("#job-title").textContent = `${job.arch} on ${dataset}, N = ${job.factor}`;
  document.title = `${job.arch} on ${dataset} · LoRITa`;
  const meta = [`Job ${job.id}`, `created ${relativeTime(job.createdAt)}`];
  if (job.worker) meta.push(`worker ${job.worker}`);
  if (job.startedAt && job.finishedAt) {
    meta.push(`ran ${duration((new Date(job.finishedAt) - new Date(job.startedAt)) / 1000)}`);
  }
  $("#job-meta").textContent = meta.join(" · ");
  $("#job-meta").title = absoluteTime(job.createdAt);
  replaceChildren($("#job-state"), stateBadge(job.state));
  setProgress($("#job-progress"), job.progress);
  const stage = job.state === "running" || job.state === "queued" ? stageLabel(job.stage || job.state) : "";
  $("#job-stage").textContent = stage ? `${stage} · ${percent(job.progress, 0)}` : "";
  $("#cancel-button").hidden = job.final;
  $("#retry-button").hidden = !(job.state === "failed" || job.state === "cancelled");
  $("#delete-button").hidden = !job.final;
  const failure = $("#failure");
  failure.hidden = job.state !== "failed";
  if (job.state === "failed") {
    $("#failure-reason").textContent = job.failureReason || "The worker did not say why.";
  }
  $("#job-spec").textContent = JSON.stringify(job.spec, null, 2);
  $(".status-card").dataset.state = job.state;
  $("#copy-link").href = `/jobs/new?from=${encodeURIComponent(job.id)}`;
}

// ---------- training curves ----------

// ---------- result ----------

function renderResult() {
  const result = job.result;
  $("#result").hidden = !result;
  if (!result || resultShown) return;
  resultShown = true;
  renderWarnings(result);
  renderSummary(result);
  renderBaselineNote(result);
  renderPretrained(result);
  renderComparisons(result);
  renderCurve(result, job);
  renderSpectra(result);
  renderRanks(result);
  // Prefer the history stored with the result when the metrics call gave nothing.
  if (!hasEpochs() && Array.isArray(result.history)) {
    result.history.forEach(addEpoch);
    renderTraining(job);
  }
}

// ---------- data loading and live updates ----------

async function loadJob() {
  job = jobView(await api(JOB_PATH));
  renderStatus();
  return job;
}

async function loadMetrics() {
  try {
    const data = await api(`${JOB_PATH}/metrics`);
    const rows = itemsOf(data, "metrics").length ? itemsOf(data, "metrics") : itemsOf(data, "epochs");
    rows.forEach(addEpoch);
  } catch {
    /* the stream or the result's history fills in */
  }
  renderTraining(job);
}

function handleEvent(event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  const type = data.type || event.type;
  if (typeof data.progress === "number" && !job.final) {
    job.progress = Math.max(job.progress, data.progress);
  }
  if (type === "epoch") {
    if (addEpoch(data)) renderTraining(job);
  } else if (type === "stage") {
    job.stage = data.stage;
    if (job.state === "queued") job.state = "running";
  } else if (type === "state") {
    if (data.status && !job.final) job.state = data.status;
    refreshJob();
  } else if (type === "end") {
    // The server closes the stream after "end"; do not let EventSource reconnect.
    closeStream();
    refreshJob();
  }
  renderStatus();
}

function openStream() {
  if (stream || typeof EventSource === "undefined") return;
  stream = new EventSource(`${API}${JOB_PATH}/events`, { withCredentials: true });
  $("#live-indicator").hidden = false;
  // The types api/routes/events.py sends (every event is named, so no onmessage).
  for (const type of ["epoch", "stage", "batch", "state", "end"]) {
    stream.addEventListener(type, handleEvent);
  }
  stream.onerror = () => {
    // EventSource reconnects by itself (with Last-Event-ID); stop once the job is over.
    if (job?.final) closeStream();
  };
}

function closeStream() {
  stream?.close();
  stream = null;
  $("#live-indicator").hidden = true;
}

let refreshing = null;

// One refresh at a time: stream events and the poll timer may ask at once.
function refreshJob() {
  refreshing ??= doRefresh().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function doRefresh() {
  clearTimeout(pollTimer);
  try {
    const wasFinal = job?.final;
    await loadJob();
    if (job.final) {
      closeStream();
      if (!wasFinal) {
        await loadMetrics();
        renderResult();
        await renderArtifacts(job);
      }
      return;
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return showMissing();
  }
  // The stream carries epochs; this slower poll keeps state and progress honest.
  pollTimer = setTimeout(refreshJob, POLL_MS);
}

function showMissing() {
  closeStream();
  const box = $("#load-error");
  box.textContent = "This job does not exist, or it belongs to someone else.";
  box.hidden = false;
  for (const section of document.querySelectorAll("main section, #result")) section.hidden = true;
  $("#job-title").textContent = "Job not found";
}

// ---------- actions ----------

// A job action asks first; while it runs its button is disabled, and a failure is toasted.
function confirmedAction(selector, question, work) {
  const button = $(selector);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (await confirmDialog(question)) await work();
    } catch (error) {
      toast(error.message, "error", 8000);
    } finally {
      button.disabled = false;
    }
  });
}

confirmedAction(
  "#cancel-button",
  {
    title: "Cancel this job?",
    text: "Training stops at the next batch. The job cannot be resumed, but you can retry it later.",
    confirmLabel: "Cancel job",
  },
  async () => {
    await api(`${JOB_PATH}/cancel`, { method: "POST" });
    toast("Cancelling: the worker stops at the next batch.");
    refreshJob();
  },
);

confirmedAction(
  "#retry-button",
  {
    title: "Retry this job?",
    text: "A new job is created from the same spec and queued.",
    confirmLabel: "Retry",
    danger: false,
  },
  async () => {
    const created = await api(`${JOB_PATH}/retry`, { method: "POST" });
    location.assign(`/jobs/${encodeURIComponent(created.id)}`);
  },
);

confirmedAction(
  "#delete-button",
  {
    title: "Delete this job?",
    text: "The job, its metrics and all of its artifacts are removed for good.",
    confirmLabel: "Delete",
  },
  async () => {
    await api(JOB_PATH, { method: "DELETE" });
    location.assign("/");
  },
);

$("#curve-x").addEventListener("change", () => job?.result && renderCurve(job.result, job));

// ---------- start ----------

async function start() {
  names = await datasetNames(api);
  try {
    await loadJob();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 422)) return showMissing();
    const box = $("#load-error");
    box.textContent = `Could not load the job: ${error.message}`;
    box.hidden = false;
    return;
  }
  await loadMetrics();
  if (job.final) {
    renderResult();
    await renderArtifacts(job);
  } else {
    openStream();
    pollTimer = setTimeout(refreshJob, POLL_MS);
  }
}

start();
