// The job page's "before and after compression" card: headline numbers, the
// before/after table and the note on the plain N = 1 model.
import { $, el, replaceChildren } from "../dom.js";
import { bytes, change, compact, integer, ms, percent, points } from "../format.js";
import { int8Note, int8Pairs } from "../results.js";
import { didNotLearn } from "../warnings.js";

function kpi(label, value, detail) {
  return el("div", { class: "kpi" }, el("span", { class: "kpi-label" }, label), el("strong", {}, value), detail ? el("span", { class: "sub" }, detail) : null);
}

function ratio(before, after) {
  return before && after ? `${(before / after).toFixed(1)}× smaller` : "";
}

// The N = 1 model trained with the same recipe is the honest reference: what the
// compressed model costs against plain training, not only against LoRITa's own.
function baselineKpi(result) {
  const plain = result.baseline?.accuracy?.uncompressed;
  const compressed = result.accuracy?.compressed;
  if (plain == null || compressed == null) return null;
  return kpi("vs plain N = 1", points(compressed - plain, 2), `plain N = 1 model: ${percent(plain, 2)}`);
}

export function renderBaselineNote(result) {
  const note = $("#baseline-note");
  const base = result.baseline;
  const plain = base?.accuracy?.uncompressed;
  note.hidden = plain == null;
  if (plain == null) return;
  const acc = result.accuracy || {};
  const plainParams = base.params?.uncompressed;
  const size = plainParams && result.params?.compressed ? ` with ${ratio(plainParams, result.params.compressed).replace(" smaller", "")} fewer parameters` : "";
  const origin = result.pretrained ? ", from your model" : "";
  note.textContent =
    `Plain training (N = 1${origin}, same recipe) reached ${percent(plain, 2)} test accuracy. ` +
    `The compressed LoRITa model scores ${percent(acc.compressed, 2)}: ` +
    `${points(acc.compressed - plain, 2)} against plain training${size}, ` +
    `${points(acc.compressed - acc.uncompressed, 2)} against LoRITa's own uncompressed model (${percent(acc.uncompressed, 2)}).`;
}

export function renderSummary(result) {
  const acc = result.accuracy || {};
  const params = result.params || {};
  const flops = result.flops || {};
  const latency = result.latency_ms || {};
  // Smaller than a model that never learned is no achievement: no "× smaller" then.
  const noWin = didNotLearn(result);
  const sizeDetail = (pair) => (noWin ? "not a win: the model did not learn" : ratio(pair.uncompressed, pair.compressed));
  $("#measure-note").textContent =
    `FLOPs and latency for one input (batch 1); latency measured on ${result.device || "cpu"}. ` +
    "Test accuracy is measured on the test set, which is never used to choose ranks." +
    (result.int8 ? ` ${int8Note(result)}` : "");
  replaceChildren(
    $("#kpis"),
    kpi("Test accuracy", percent(acc.compressed, 2), acc.uncompressed != null ? `${points(acc.compressed - acc.uncompressed, 2)} vs uncompressed` : ""),
    baselineKpi(result),
    kpi("Parameters", compact(params.compressed), sizeDetail(params)),
    kpi("FLOPs", compact(flops.compressed), sizeDetail(flops)),
    kpi("Latency", ms(latency.compressed), latency.uncompressed ? `${(latency.uncompressed / latency.compressed).toFixed(2)}× speed-up` : ""),
  );
  $("#kpis").classList.toggle("no-win", noWin);
  const rows = [
    ["Test accuracy", acc, (v) => percent(v, 2), (a, b) => points(b - a, 2)],
    ["Plain N = 1 model, test accuracy", result.baseline?.accuracy || {}, (v) => percent(v, 2), (a, b) => points(b - a, 2)],
    ["Validation accuracy", result.val_accuracy || {}, (v) => percent(v, 2), (a, b) => points(b - a, 2)],
    ["Parameters", params, integer, change],
    ["FLOPs", flops, integer, change],
    ["Latency", latency, ms, change],
    ["File size", result.file_size_bytes || {}, bytes, change],
    ...int8Pairs(result).map(({ label, kind, pair }) =>
      kind === "accuracy" ? [label, pair, (v) => percent(v, 2), (a, b) => points(b - a, 2)] : [label, pair, kind === "bytes" ? bytes : ms, change],
    ),
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
