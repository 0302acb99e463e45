// The job page's training curves: loss, accuracy and learning rate per epoch of every
// run, from the metrics call, the event stream or the stored history.
import { color, draw, percentAxis } from "../charts.js";
import { $ } from "../dom.js";
import { duration, percent } from "../format.js";

// Colour tells the split (train / validation), the dash tells the run.
// Epoch rows keyed "run:epoch", so replays from the stream never double a point.
const epochs = new Map();

const RUN_STYLE = {
  lorita: { name: "", dash: "solid" },
  baseline: { name: "baseline N=1", dash: "dash" },
  finetune: { name: "fine-tune", dash: "dot" },
  "baseline finetune": { name: "baseline N=1 fine-tune", dash: "dash" },
  "plain+finetune": { name: "plain N=1 fine-tune", dash: "dashdot" },
  pruning: { name: "pruning fine-tune", dash: "longdash" },
};

export function addEpoch(row) {
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

// A fine-tuning tried at several rates runs as "METHOD at Sx lr": the method's style,
// named with its rate, each further rate of the same method in another dash.
const RATE_DASHES = ["longdashdot", "dashdot", "dash"];

function runStyle(run, seen) {
  if (RUN_STYLE[run]) return RUN_STYLE[run];
  const at = run.indexOf(" at ");
  const base = at > 0 ? RUN_STYLE[run.slice(0, at)] : null;
  if (!base) return { name: run, dash: "solid" };
  const index = seen.get(run.slice(0, at)) ?? 0;
  seen.set(run.slice(0, at), index + 1);
  return { name: `${base.name}${run.slice(at)}`, dash: index ? RATE_DASHES[(index - 1) % RATE_DASHES.length] : base.dash };
}

function lineTraces(byRun, series) {
  const traces = [];
  const seen = new Map();
  for (const [run, rows] of byRun) {
    const style = runStyle(run, seen);
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

export function renderTraining(job) {
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
  const accuracyTraces = lineTraces(byRun, [
    ["train_acc", "train", 0],
    ["val_acc", "validation", 1],
  ]);
  draw($("#chart-accuracy"), accuracyTraces, {
    xaxis: x,
    yaxis: percentAxis(accuracyTraces.flatMap((t) => t.y), { ticks: 5 }),
  });
  draw($("#chart-lr"), lineTraces(byRun, [["lr", "learning rate", 2]]), {
    xaxis: x,
    yaxis: { exponentformat: "e" },
    showlegend: byRun.size > 1,
  });
}

// Whether any epoch row is known yet.
export function hasEpochs() {
  return epochs.size > 0;
}
