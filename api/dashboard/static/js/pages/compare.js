// Compare: pick finished jobs and overlay their accuracy-vs-size curves.
import "../layout.js";
import { api, itemsOf } from "../api.js";
import { color, draw, percentAxis, purge } from "../charts.js";
import { $, $$, el, replaceChildren } from "../dom.js";
import { percent, relativeTime, shortId } from "../format.js";
import { datasetNames } from "../datasets-model.js";
import { jobView } from "../jobs-model.js";
import { accuracyKey, accuracyLabel, chosenAccuracy } from "../results.js";

const MAX_JOBS = 200;
const details = new Map(); // id -> job view with result
let names = new Map();
let jobs = [];

function selectedIds() {
  return $$("#pick-list input:checked").map((input) => input.value);
}

function syncUrl() {
  const ids = selectedIds();
  history.replaceState(null, "", ids.length ? `?ids=${ids.map(encodeURIComponent).join(",")}` : location.pathname);
}

function datasetName(job) {
  return names.get(job.dataset) || job.dataset;
}

function label(job) {
  return `${job.arch} · ${datasetName(job)} · N=${job.factor} · ${shortId(job.id)}`;
}

function renderPicker(initial) {
  const list = $("#pick-list");
  replaceChildren(
    list,
    jobs.map((job) => {
      const id = `pick-${job.id}`;
      return el(
        "li",
        {},
        el("input", { type: "checkbox", id, value: job.id, checked: initial.includes(job.id) }),
        el(
          "label",
          { for: id },
          el("span", {}, `${job.arch} on ${datasetName(job)}, N = ${job.factor}`),
          el("span", { class: "sub" }, `${shortId(job.id)} · ${percent(job.accuracyAfter)} · ${relativeTime(job.createdAt)}`),
        ),
      );
    }),
  );
  $("#pick-empty").hidden = jobs.length > 0;
}

async function detail(id) {
  if (!details.has(id)) details.set(id, jobView(await api(`/jobs/${encodeURIComponent(id)}`)));
  return details.get(id);
}

function curve(block, xKey) {
  return [...(block?.curve || [])].sort((a, b) => a[xKey] - b[xKey]);
}

async function renderChart() {
  const ids = selectedIds();
  syncUrl();
  const chart = $("#chart-compare");
  const table = $("#compare-table");
  $("#compare-hint").hidden = ids.length >= 2;
  if (ids.length < 1) {
    purge(chart);
    table.hidden = true;
    return;
  }
  const xKey = $("#compare-x").value;
  const withBaselines = $("#compare-baselines").checked;
  const picked = await Promise.all(ids.map(detail));
  const blocks = picked.flatMap((job) => [job.result, withBaselines ? job.result?.baseline : null]);
  const yKey = accuracyKey(blocks.filter(Boolean));
  const traces = [];
  picked.forEach((job, index) => {
    const result = job.result || {};
    const series = [[label(job), result, "solid"]];
    if (withBaselines && result.baseline) series.push([`${label(job)} · baseline`, result.baseline, "dash"]);
    for (const [name, block, dash] of series) {
      const points = curve(block, xKey).filter((p) => p[yKey] != null);
      if (!points.length) continue;
      traces.push({
        x: points.map((p) => p[xKey]),
        y: points.map((p) => p[yKey]),
        name,
        legendgroup: name,
        mode: "lines+markers",
        line: { color: color(index), dash, width: 2 },
        marker: { size: 5 },
      });
      const chosenY = chosenAccuracy(block, yKey);
      if (block.chosen?.[xKey] != null && chosenY != null) {
        traces.push({
          x: [block.chosen[xKey]],
          y: [chosenY],
          name: `${name} · chosen`,
          legendgroup: name,
          showlegend: false,
          mode: "markers",
          marker: { symbol: "star", size: 14, color: color(index), line: { color: "#fff", width: 1 } },
        });
      }
    }
  });
  draw(chart, traces, {
    xaxis: { title: { text: xKey === "flops_kept" ? "share of FLOPs kept" : "share of parameters kept" }, tickformat: ".0%", range: [0, 1.02] },
    yaxis: { title: { text: accuracyLabel(yKey) }, ...percentAxis(traces.flatMap((t) => t.y)) },
    hovermode: "closest",
  });
  table.hidden = false;
  replaceChildren(
    $("#compare-table tbody"),
    picked.map((job, index) => {
      const result = job.result || {};
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, el("span", { class: "swatch", style: `background:${color(index)}` }), el("a", { href: `/jobs/${encodeURIComponent(job.id)}` }, shortId(job.id))),
        el("td", {}, job.arch),
        el("td", { class: "wrap-anywhere" }, datasetName(job)),
        el("td", { class: "num" }, String(job.factor)),
        el("td", { class: "num" }, percent(result.accuracy?.compressed, 2)),
        el("td", { class: "num" }, percent(result.chosen?.params_kept)),
        el("td", { class: "num" }, percent(result.chosen?.flops_kept)),
      );
    }),
  );
}

async function start() {
  names = await datasetNames(api);
  const initial = (new URLSearchParams(location.search).get("ids") || "").split(",").filter(Boolean);
  try {
    const data = await api(`/jobs?status=succeeded&limit=${MAX_JOBS}`);
    jobs = itemsOf(data).map(jobView).filter((job) => job.state === "succeeded");
  } catch (error) {
    replaceChildren($("#pick-empty"), `Could not load jobs: ${error.message}`);
    $("#pick-empty").hidden = false;
    return;
  }
  renderPicker(initial);
  $("#compare-form").addEventListener("change", renderChart);
  $("#compare-x").addEventListener("change", renderChart);
  $("#compare-baselines").addEventListener("change", renderChart);
  if (initial.length) renderChart();
}

start();
