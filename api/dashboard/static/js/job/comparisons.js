// The job page's comparisons card: LoRITa and the peer methods side by side.
import { $, el, replaceChildren } from "../dom.js";
import { ms, percent } from "../format.js";
import { comparisonRows } from "../results.js";

// The comparisons side by side (same data and budget), with the verdict on top.
export function renderComparisons(result) {
  const rows = comparisonRows(result);
  const skipped = Object.entries(result.comparisons_skipped || {});
  $("#comparisons").hidden = !rows.length && !skipped.length;
  if (!rows.length && !skipped.length) return;
  $("#verdict").textContent = result.verdict?.sentence || "";
  replaceChildren(
    $("#comparisons-table tbody"),
    rows.map((row) =>
      el(
        "tr",
        { class: row.best ? "best" : row.reference ? "reference" : null, "data-method": row.method },
        el("th", { scope: "row" }, row.label, row.best ? el("span", { class: "badge best" }, "best") : null),
        el("td", { class: "num" }, percent(row.accuracy, 2)),
        el("td", { class: "num" }, percent(row.paramsKept, 1)),
        el("td", { class: "num" }, percent(row.flopsKept, 1)),
        el("td", { class: "num" }, ms(row.b1)),
        el("td", { class: "num" }, ms(row.b64)),
      ),
    ),
  );
  const notes = new Map();
  for (const row of rows) if (row.note) notes.set(row.note, [...(notes.get(row.note) || []), row.label]);
  replaceChildren(
    $("#comparison-notes"),
    [...notes].map(([note, labels]) => el("li", {}, `${labels.join(", ")}: ${note}`)),
    skipped.map(([method, reason]) => el("li", {}, `${method} did not run: ${reason}`)),
    rows.length ? el("li", {}, "Shares are of the plain N = 1 model's size. Latency: median milliseconds per forward pass on the CPU, all models measured in interleaved rounds.") : null,
  );
}
