// The job page's accuracy-against-size chart of the rank search (LoRITa and the
// plain N = 1 model), with the chosen point marked.
import { color, draw, percentAxis } from "../charts.js";
import { $ } from "../dom.js";
import { percent, points } from "../format.js";
import { accuracyKey, accuracyLabel, chosenAccuracy } from "../results.js";

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

export function renderCurve(result, job) {
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
      ? spec.max_accuracy_drop != null
        ? `the smallest model within ${points(spec.max_accuracy_drop, 1).replace(/^[+±]/, "")} of the uncompressed accuracy`
        : "the smallest model within the allowed drop of the uncompressed accuracy"
      : "the chosen ranks";
  $("#curve-note").textContent =
    `Accuracy on the ${split} as more of the spectrum is cut. The star marks ${target}; ` +
    `the dotted line is the uncompressed model.` +
    (result.baseline ? " Dashed: the plain N = 1 model trained with the same recipe and truncated the same way." : "");
  draw($("#chart-curve"), traces, {
    xaxis: { title: { text: xKey === "flops_kept" ? "share of FLOPs kept" : "share of parameters kept" }, tickformat: ".0%", range: [0, 1.02] },
    yaxis: {
      title: { text: accuracyLabel(yKey) },
      ...percentAxis([...traces.flatMap((t) => t.y), ...(reference == null ? [] : [reference])]),
    },
    hovermode: "closest",
    shapes,
  });
}
