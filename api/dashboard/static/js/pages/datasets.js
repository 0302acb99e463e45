// Datasets: upload (drag-and-drop or picker, with progress) and the list of datasets.
import "../layout.js";
import { api, uploadWithProgress } from "../api.js";
import { datasetViews, inputShape, presenceText, sampleCounts } from "../datasets-model.js";
import { $, el, replaceChildren } from "../dom.js";
import { bytes, integer, relativeTime } from "../format.js";

const ACCEPTED = [".npz", ".zip"];
const form = $("#upload-form");
const input = $("#file-input");
const zone = $("#dropzone");
const status = $("#upload-status");
let chosen = null;

function setStatus(message, kind = "info") {
  replaceChildren(status, message);
  status.dataset.kind = kind;
}

function choose(file) {
  chosen = null;
  if (!file) return;
  const ok = ACCEPTED.some((suffix) => file.name.toLowerCase().endsWith(suffix));
  if (!ok) {
    $("#file-chosen").textContent = "";
    setStatus(`${file.name} is not a .npz or .zip file.`, "error");
    return;
  }
  chosen = file;
  $("#file-chosen").textContent = `${file.name} · ${bytes(file.size)}`;
  setStatus("");
}

input.addEventListener("change", () => choose(input.files[0]));

for (const type of ["dragenter", "dragover"]) {
  zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  zone.addEventListener(type, (event) => {
    event.preventDefault();
    if (type === "dragleave" && zone.contains(event.relatedTarget)) return;
    zone.classList.remove("dragging");
  });
}
zone.addEventListener("drop", (event) => choose(event.dataTransfer?.files?.[0]));
// Dropping a file anywhere else must not navigate away from the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

function showProgress(fraction) {
  const pct = Math.round(fraction * 100);
  $("#upload-progress").value = pct;
  $("#upload-percent").textContent = pct >= 100 ? "Validating…" : `${pct}%`;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!chosen) {
    setStatus("Choose a .npz or .zip file first.", "error");
    input.focus();
    return;
  }
  const data = new FormData();
  data.append("file", chosen, chosen.name);
  const name = $("#dataset-name").value.trim();
  if (name) data.append("name", name);
  const button = $("#upload-button");
  button.disabled = true;
  $("#upload-progress-wrap").hidden = false;
  showProgress(0);
  setStatus(`Uploading ${chosen.name}…`);
  try {
    const created = await uploadWithProgress("/datasets", data, showProgress);
    const view = datasetViews({ uploaded: [created] })[0];
    setStatus(
      [
        el("strong", {}, "Uploaded. "),
        `${view.name}: ${view.numClasses ?? "?"} classes, input ${inputShape(view)}. Use it as `,
        el("code", {}, view.reference),
        " or ",
        el("a", { href: `/jobs/new?dataset=${encodeURIComponent(view.reference)}` }, "start a job with it"),
        ".",
      ],
      "success",
    );
    form.reset();
    chosen = null;
    $("#file-chosen").textContent = "";
    await loadDatasets();
  } catch (error) {
    setStatus([el("strong", {}, "Upload refused. "), error.message], "error");
  } finally {
    button.disabled = false;
    $("#upload-progress-wrap").hidden = true;
  }
});

function datasetRow(view) {
  return el(
    "tr",
    { "data-reference": view.reference },
    el("th", { scope: "row", "data-label": "Name", class: "wrap-anywhere" }, view.name),
    el(
      "td",
      { "data-label": "Kind", "data-present": view.present == null ? null : String(view.present) },
      view.kind === "built-in" ? "built-in" : `uploaded${view.fileKind ? ` ${view.fileKind}` : ""}`,
      presenceText(view) ? el("span", { class: "sub" }, presenceText(view)) : null,
    ),
    el("td", { "data-label": "Classes", class: "num" }, integer(view.numClasses)),
    el("td", { "data-label": "Input" }, inputShape(view)),
    el("td", { "data-label": "Train / test", class: "num" }, sampleCounts(view)),
    el("td", { "data-label": "Reference" }, el("code", {}, view.reference)),
    el(
      "td",
      { "data-label": "" },
      el("a", { class: "button small", href: `/jobs/new?dataset=${encodeURIComponent(view.reference)}` }, "New job"),
      view.createdAt ? el("span", { class: "sub" }, `added ${relativeTime(view.createdAt)}`) : null,
    ),
  );
}

async function loadDatasets() {
  try {
    const views = datasetViews(await api("/datasets"));
    replaceChildren($("#datasets-body"), views.map(datasetRow));
  } catch (error) {
    replaceChildren($("#datasets-body"), el("tr", {}, el("td", { colspan: 7 }, `Could not load datasets: ${error.message}`)));
  }
}

loadDatasets();
