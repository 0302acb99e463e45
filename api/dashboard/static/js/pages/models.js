// Your models: upload the weights of a trained model, list them, start a job, delete.
import "../layout.js";
import { api, DASHBOARD_API, uploadWithProgress } from "../api.js";
import { datasetViews } from "../datasets-model.js";
import { $, el, replaceChildren } from "../dom.js";
import { bytes, integer, relativeTime } from "../format.js";
import { confirmDialog, toast } from "../layout.js";

const form = $("#model-form");
const status = $("#model-status");

function setStatus(message, kind = "info") {
  replaceChildren(status, message);
  status.dataset.kind = kind;
}

// A refused upload lists what does not fit: show the first few of each kind.
function mismatchList(body) {
  const parts = [];
  for (const [key, label] of [["missing", "missing"], ["unexpected", "unexpected"], ["wrong_shape", "wrong shape"]]) {
    const names = Object.keys(body?.[key] || {});
    if (names.length) parts.push(el("li", {}, `${label}: ${names.slice(0, 6).join(", ")}${names.length > 6 ? ` and ${names.length - 6} more` : ""}`));
  }
  return parts.length ? el("ul", { class: "small" }, parts) : null;
}

export function newJobHref(model) {
  return `/jobs/new?arch=${encodeURIComponent(model.arch)}&weights=${encodeURIComponent(model.reference)}`;
}

async function loadOptions() {
  const [options, datasets] = await Promise.all([
    api("/options", { base: DASHBOARD_API }).catch(() => null),
    api("/datasets").catch(() => []),
  ]);
  replaceChildren($("#model-archs"), (options?.archs || []).map((arch) => el("option", { value: arch })));
  replaceChildren(
    $("#model-dataset"),
    datasetViews(datasets).map((view) => el("option", { value: view.reference }, view.name)),
  );
}

function modelRow(model) {
  const remove = el("button", { type: "button", class: "button small danger" }, "Delete");
  remove.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: `Delete ${model.name}?`,
      text: "Jobs that already ran keep their results.",
      confirmLabel: "Delete",
    });
    if (!sure) return;
    try {
      await api(`/models/${model.id}`, { method: "DELETE" });
      toast(`Deleted ${model.name}.`);
      await loadModels();
    } catch (error) {
      toast(`Could not delete: ${error.message}`, "error");
    }
  });
  return el(
    "tr",
    { "data-reference": model.reference },
    el("th", { scope: "row", class: "wrap-anywhere" }, model.name, el("span", { class: "sub" }, `${model.filename} · ${bytes(model.size_bytes)}`)),
    el("td", {}, el("code", {}, model.arch)),
    el("td", {}, `${model.num_classes} classes, ${model.in_channels}×${model.image_size}×${model.image_size}`),
    el("td", { class: "num" }, integer(model.parameter_count)),
    el("td", {}, el("code", {}, model.reference)),
    el(
      "td",
      {},
      el("a", { class: "button small", href: newJobHref(model) }, "Compress it"),
      remove,
      el("span", { class: "sub" }, `added ${relativeTime(model.created_at)}`),
    ),
  );
}

async function loadModels() {
  try {
    const models = await api("/models");
    replaceChildren(
      $("#models-body"),
      models.length ? models.map(modelRow) : el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No models yet.")),
    );
  } catch (error) {
    replaceChildren($("#models-body"), el("tr", {}, el("td", { colspan: 6 }, `Could not load models: ${error.message}`)));
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("#model-file").files[0];
  const arch = $("#model-arch").value.trim();
  if (!file || !file.name.toLowerCase().endsWith(".safetensors")) {
    setStatus("Choose a .safetensors file first.", "error");
    return;
  }
  if (!arch) {
    setStatus("Say which architecture the weights are for.", "error");
    $("#model-arch").focus();
    return;
  }
  const data = new FormData();
  data.append("arch", arch);
  data.append("dataset", $("#model-dataset").value);
  const name = $("#model-name").value.trim();
  if (name) data.append("name", name);
  data.append("file", file, file.name);
  const button = $("#model-upload-button");
  button.disabled = true;
  setStatus(`Uploading and checking ${file.name}…`);
  try {
    const created = await uploadWithProgress("/models", data, () => {});
    setStatus(
      [el("strong", {}, "Uploaded. "), `${created.name} fits ${created.arch}. `, el("a", { href: newJobHref(created) }, "Compress it"), "."],
      "success",
    );
    form.reset();
    await loadModels();
  } catch (error) {
    setStatus([el("strong", {}, "Upload refused. "), error.message, mismatchList(error.body)], "error");
  } finally {
    button.disabled = false;
  }
});

loadOptions();
loadModels();
