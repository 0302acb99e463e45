// Job detail: status, live training curves from the event stream, and the
// compression result (tables, curves, spectra, downloads) once it is done.
import { ApiError, API, api, itemsOf } from "../api.js";
import { color, draw } from "../charts.js";
import { $, el, replaceChildren, setProgress, stateBadge } from "../dom.js";
import {
  absoluteTime,
  bytes,
  change,
  compact,
  duration,
  integer,
  ms,
  percent,
  points,
  relativeTime,
  shortId,
} from "../format.js";
import { datasetNames } from "../datasets-model.js";
import { jobView, stageLabel } from "../jobs-model.js";
import { accuracyKey, accuracyLabel, chosenAccuracy } from "../results.js";
import { confirmDialog, toast } from "../layout.js";

const jobId = decodeURIComponent(location.pathname.split("/").filter(Boolean).at(-1) || "");
const POLL_MS = 4000;

let job = null;
let names = new Map();
let stream = null;
let pollTimer = null;
let resultShown = false;
// Epoch rows keyed "run:epoch", so replays from the stream never double a point.
const epochs = new Map();

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

// Colour tells the split (train / validation), the dash tells the run.
const RUN_STYLE = {
  lorita: { name: "", dash: "solid" },
  baseline: { name: "baseline N=1", dash: "dash" },
  finetune: { name: "fine-tune", dash: "dot" },
};

function addEpoch(row) {
  if (row == null || row.epoch == null) return false;
  const run = row.run || "lorita";
  const key = `${run}:${row.epoch}`;
  const had = epochs.has(key);
  epochs.set(key, { ...row, run });
  return !had;
}

function runs() {
  const byRun = new Map();
  for (const row of epochs.values()) {
    if (!byRun.has(row.run)) byRun.set(row.run, []);
    byRun.get(row.run).push(row);
  }
  for (const rows of byRun.values()) rows.sort((a, b) => a.epoch - b.epoch);
  return byRun;
}

function lineTraces(byRun, series) {
  const traces = [];
  for (const [run, rows] of byRun) {
    const style = RUN_STYLE[run] || { name: run, dash: "solid" };
    series.forEach(([key, label, colorIndex]) => {
      const points = rows.filter((r) => r[key] != null);
      if (!points.length) return;
      traces.push({
        x: points.map((r) => r.epoch),
        y: points.map((r) => r[key]),
        name: style.name ? `${label} · ${style.name}` : label,
        mode: points.length > 30 ? "lines" : "lines+markers",
        line: { color: color(colorIndex), dash: style.dash, width: 2 },
        marker: { size: 5 },
      });
    });
  }
  return traces;
}

function renderTraining() {
  const byRun = runs();
  const count = epochs.size;
  const lorita = byRun.get("lorita") || [];
  const last = lorita.at(-1);
  $("#training-section").dataset.epochs = String(count);
  $("#training-section").classList.toggle("training-empty", !count);
  if (!count) {
    $("#training-summary").textContent = job.final ? "No training epochs were recorded." : "Waiting for the first epoch…";
    return;
  }
  const total = last?.epochs;
  $("#training-summary").textContent = last
    ? `Epoch ${last.epoch}${total ? ` of ${total}` : ""}: validation accuracy ${percent(last.val_acc)}, ` +
      `loss ${last.val_loss?.toFixed(4) ?? "—"}${last.epoch_time_s ? `, ${duration(last.epoch_time_s)} per epoch` : ""}.`
    : `${count} epochs recorded.`;
  // Show the whole planned run, so the curves also tell how far along training is.
  const planned = Math.max(...Array.from(epochs.values(), (r) => Math.max(r.epochs || 0, r.epoch)));
  const x = { title: { text: "epoch" }, range: [0.5, planned + 0.5], dtick: planned <= 12 ? 1 : undefined };
  draw(
    $("#chart-loss"),
    lineTraces(byRun, [
      ["train_loss", "train", 0],
      ["val_loss", "validation", 1],
    ]),
    { xaxis: x, yaxis: { rangemode: "tozero" } },
  );
  draw(
    $("#chart-accuracy"),
    lineTraces(byRun, [
      ["train_acc", "train", 0],
      ["val_acc", "validation", 1],
    ]),
    { xaxis: x, yaxis: { tickformat: ".0%" } },
  );
  draw($("#chart-lr"), lineTraces(byRun, [["lr", "learning rate", 2]]), {
    xaxis: x,
    yaxis: { exponentformat: "e" },
    showlegend: byRun.size > 1,
  });
}

// ---------- result ----------

function kpi(label, value, detail) {
  return el("div", { class: "kpi" }, el("span", { class: "kpi-label" }, label), el("strong", {}, value), detail ? el("span", { class: "sub" }, detail) : null);
}

function ratio(before, after) {
  return before && after ? `${(before / after).toFixed(1)}× smaller` : "";
}

function renderSummary(result) {
  const acc = result.accuracy || {};
  const params = result.params || {};
  const flops = result.flops || {};
  const latency = result.latency_ms || {};
  $("#measure-note").textContent =
    `FLOPs and latency for one input (batch 1); latency measured on ${result.device || "cpu"}. ` +
    "Test accuracy is measured on the test set, which is never used to choose ranks.";
  replaceChildren(
    $("#kpis"),
    kpi("Test accuracy", percent(acc.compressed, 2), acc.uncompressed != null ? `${points(acc.compressed - acc.uncompressed, 2)} vs uncompressed` : ""),
    kpi("Parameters", compact(params.compressed), ratio(params.uncompressed, params.compressed)),
    kpi("FLOPs", compact(flops.compressed), ratio(flops.uncompressed, flops.compressed)),
    kpi("Latency", ms(latency.compressed), latency.uncompressed ? `${(latency.uncompressed / latency.compressed).toFixed(2)}× speed-up` : ""),
  );
  const rows = [
    ["Test accuracy", acc, (v) => percent(v, 2), (a, b) => points(b - a, 2)],
    ["Validation accuracy", result.val_accuracy || {}, (v) => percent(v, 2), (a, b) => points(b - a, 2)],
    ["Parameters", params, integer, change],
    ["FLOPs", flops, integer, change],
    ["Latency", latency, ms, change],
    ["File size", result.file_size_bytes || {}, bytes, change],
  ];
  replaceChildren(
    $("#before-after tbody"),
    rows
      .filter(([, pair]) => pair.uncompressed != null || pair.compressed != null)
      .map(([label, pair, fmt, diff]) =>
        el(
          "tr",
          {},
          el("th", { scope: "row" }, label),
          el("td", { class: "num" }, fmt(pair.uncompressed)),
          el("td", { class: "num" }, fmt(pair.compressed)),
          el("td", { class: "num" }, pair.uncompressed != null && pair.compressed != null ? diff(pair.uncompressed, pair.compressed) : "—"),
        ),
      ),
  );
}

function curveTraces(label, block, xKey, yKey, colorIndex, dash) {
  const curve = [...(block.curve || [])].filter((p) => p[yKey] != null).sort((a, b) => a[xKey] - b[xKey]);
  if (!curve.length) return [];
  const traces = [
    {
      x: curve.map((p) => p[xKey]),
      y: curve.map((p) => p[yKey]),
      name: label,
      legendgroup: label,
      mode: "lines+markers",
      line: { color: color(colorIndex), dash, width: 2 },
      marker: { size: 5 },
      hovertemplate: `%{x:.1%} kept: accuracy %{y:.2%}<extra>${label}</extra>`,
    },
  ];
  const chosen = block.chosen;
  const y = chosen ? chosenAccuracy(block, yKey) : null;
  if (chosen && chosen[xKey] != null && y != null) {
    const test = block.accuracy?.compressed;
    traces.push({
      x: [chosen[xKey]],
      y: [y],
      name: `${label} · chosen`,
      legendgroup: label,
      mode: "markers",
      marker: { symbol: "star", size: 16, color: color(colorIndex), line: { color: "#fff", width: 1 } },
      hovertemplate:
        `chosen: %{x:.1%} kept, accuracy %{y:.2%}` +
        (test != null && yKey !== "test_accuracy" ? ` (test ${percent(test, 2)})` : "") +
        `<extra>${label}</extra>`,
    });
  }
  return traces;
}

function renderCurve(result) {
  const xKey = $("#curve-x").value;
  const yKey = accuracyKey([result, result.baseline]);
  const traces = curveTraces("LoRITa", result, xKey, yKey, 0, "solid");
  if (result.baseline) traces.push(...curveTraces("baseline N=1", result.baseline, xKey, yKey, 1, "dash"));
  const reference = yKey === "test_accuracy" ? result.accuracy?.uncompressed : result.val_accuracy?.uncompressed;
  const shapes =
    reference == null
      ? []
      : [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: reference, y1: reference, line: { dash: "dot", width: 1, color: "#868e96" } }];
  const spec = result.spec?.compress || job.spec?.compress || {};
  const split = yKey === "test_accuracy" ? "test set" : "validation split (the ranks are chosen on it)";
  const target =
    spec.strategy === "accuracy" || !spec.strategy
      ? `the smallest model within ${points(spec.max_accuracy_drop ?? 0.01, 1).replace(/^[+±]/, "")} of the uncompressed accuracy`
      : "the chosen ranks";
  $("#curve-note").textContent =
    `Accuracy on the ${split} as more of the spectrum is cut. The star marks ${target}; ` +
    `the dotted line is the uncompressed model.` +
    (result.baseline ? " Dashed: the plain N = 1 model trained with the same recipe and truncated the same way." : "");
  draw($("#chart-curve"), traces, {
    xaxis: { title: { text: xKey === "flops_kept" ? "share of FLOPs kept" : "share of parameters kept" }, tickformat: ".0%", range: [0, 1.02] },
    yaxis: { title: { text: accuracyLabel(yKey) }, tickformat: ".0%" },
    hovermode: "closest",
    shapes,
  });
}

function renderSpectra(result) {
  const layers = Object.entries(result.layers || {});
  const traces = [];
  layers.forEach(([name, layer], index) => {
    const values = layer.singular_values || [];
    if (!values.length || !(values[0] > 0)) return;
    const top = values[0];
    const y = values.map((v) => Math.max(v / top, 1e-12));
    const c = color(index);
    traces.push({
      x: y.map((_, i) => i + 1),
      y,
      name,
      legendgroup: name,
      mode: "lines",
      line: { color: c, width: 1.5 },
      hovertemplate: `${name}<br>σ%{x}: %{y:.3g} of σ1<extra></extra>`,
    });
    const rank = layer.rank ?? result.ranks?.[name];
    if (rank && rank <= y.length) {
      traces.push({
        x: [rank],
        y: [y[rank - 1]],
        name: `${name} kept rank`,
        legendgroup: name,
        showlegend: false,
        mode: "markers",
        marker: { color: c, size: 9, line: { color: "#fff", width: 1 } },
        hovertemplate: `${name}: kept rank ${rank} of ${layer.full_rank ?? y.length}<extra></extra>`,
      });
    }
  });
  draw($("#chart-spectrum"), traces, {
    xaxis: {
      title: { text: "index i" },
      ...(layers.some(([, l]) => (l.full_rank || 0) > 200) ? { type: "log", dtick: 1 } : {}),
    },
    yaxis: { title: { text: "σi / σ1 (log)" }, type: "log", dtick: 1, exponentformat: "power" },
    hovermode: "closest",
    showlegend: traces.length <= 40,
  });
}

function renderRanks(result) {
  const layers = result.layers || {};
  const layerNames = Object.keys(layers).length ? Object.keys(layers) : Object.keys(result.ranks || {});
  replaceChildren(
    $("#ranks-table tbody"),
    layerNames.map((name) => {
      const layer = layers[name] || {};
      const rank = layer.rank ?? result.ranks?.[name];
      const full = layer.full_rank;
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, el("code", {}, name)),
        el("td", { class: "shape" }, layer.shape ? layer.shape.join(" × ") : "—"),
        el("td", { class: "num" }, full ? `${integer(rank)} / ${integer(full)}` : integer(rank)),
        el("td", { class: "num" }, full ? percent(rank / full, 0) : "—"),
        el("td", {}, layer.factorized ? "two layers" : "dense"),
      );
    }),
  );
}

function renderResult() {
  const result = job.result;
  $("#result").hidden = !result;
  if (!result || resultShown) return;
  resultShown = true;
  renderSummary(result);
  renderCurve(result);
  renderSpectra(result);
  renderRanks(result);
  // Prefer the history stored with the result when the metrics call gave nothing.
  if (!epochs.size && Array.isArray(result.history)) {
    result.history.forEach(addEpoch);
    renderTraining();
  }
}

// ---------- downloads ----------

const ARTIFACT_NOTES = {
  "model.safetensors": "Dense weights in the original structure, truncated",
  "lowrank.safetensors": "Low-rank model: each truncated layer as two smaller layers",
  "lowrank.json": "Structure of the low-rank model (to rebuild it)",
  "model.onnx": "ONNX export of the low-rank model",
  "report.json": "Everything on this page as JSON",
};

async function renderArtifacts() {
  if (job.state !== "succeeded") {
    $("#downloads").hidden = true;
    return;
  }
  let items = [];
  try {
    items = itemsOf(await api(`/jobs/${encodeURIComponent(job.id)}/artifacts`), "artifacts");
  } catch {
    items = (job.result?.artifacts || []).map((name) => ({ name }));
  }
  const list = $("#artifact-list");
  replaceChildren(
    list,
    items.map((item) => {
      const name = typeof item === "string" ? item : item.name;
      const size = typeof item === "object" ? (item.size_bytes ?? item.size) : null;
      const href = `${API}/jobs/${encodeURIComponent(job.id)}/artifacts/${encodeURIComponent(name)}`;
      return el(
        "li",
        {},
        el(
          "a",
          { class: "button download", href, download: name, "aria-label": `Download ${name}${size != null ? `, ${bytes(size)}` : ""}` },
          el("span", { class: "file-name" }, name),
          size != null ? el("span", { class: "sub" }, bytes(size)) : null,
        ),
        el("span", { class: "sub" }, ARTIFACT_NOTES[name] || ""),
      );
    }),
  );
  $("#downloads").hidden = !items.length;
}

// ---------- data loading and live updates ----------

async function loadJob() {
  job = jobView(await api(`/jobs/${encodeURIComponent(jobId)}`));
  renderStatus();
  return job;
}

async function loadMetrics() {
  try {
    const data = await api(`/jobs/${encodeURIComponent(jobId)}/metrics`);
    const rows = itemsOf(data, "metrics").length ? itemsOf(data, "metrics") : itemsOf(data, "epochs");
    rows.forEach(addEpoch);
  } catch {
    /* the stream or the result's history fills in */
  }
  renderTraining();
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
    if (addEpoch(data)) renderTraining();
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
  stream = new EventSource(`${API}/jobs/${encodeURIComponent(jobId)}/events`, { withCredentials: true });
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
        await renderArtifacts();
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

async function act(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    toast(error.message, "error", 8000);
  } finally {
    button.disabled = false;
  }
}

$("#cancel-button").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const ok = await confirmDialog({
      title: "Cancel this job?",
      text: "Training stops at the next batch. The job cannot be resumed, but you can retry it later.",
      confirmLabel: "Cancel job",
    });
    if (!ok) return;
    await api(`/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
    toast("Cancelling: the worker stops at the next batch.");
    refreshJob();
  }),
);

$("#retry-button").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const ok = await confirmDialog({
      title: "Retry this job?",
      text: "A new job is created from the same spec and queued.",
      confirmLabel: "Retry",
      danger: false,
    });
    if (!ok) return;
    const created = await api(`/jobs/${encodeURIComponent(jobId)}/retry`, { method: "POST" });
    location.assign(`/jobs/${encodeURIComponent(created.id)}`);
  }),
);

$("#delete-button").addEventListener("click", (event) =>
  act(event.currentTarget, async () => {
    const ok = await confirmDialog({
      title: "Delete this job?",
      text: "The job, its metrics and all of its artifacts are removed for good.",
      confirmLabel: "Delete",
    });
    if (!ok) return;
    await api(`/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
    location.assign("/");
  }),
);

$("#curve-x").addEventListener("change", () => job?.result && renderCurve(job.result));

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
    await renderArtifacts();
  } else {
    openStream();
    pollTimer = setTimeout(refreshJob, POLL_MS);
  }
}

start();
