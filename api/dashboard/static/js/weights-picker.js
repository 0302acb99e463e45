// The new-job form's "Start from" field: from scratch, or from one of your uploaded
// models (model.weights). Picking a model sets the architecture it was uploaded for,
// since the weights only fit that one.
import { api } from "./api.js";
import { $, el, replaceChildren } from "./dom.js";

function selectArch(arch) {
  const select = $("#arch");
  if (!select || !arch) return;
  if (!Array.from(select.options).some((o) => o.value === arch)) {
    select.append(el("option", { value: arch }, arch));
  }
  select.value = arch;
  select.dispatchEvent(new Event("change"));
}

export async function setupWeightsPicker(query = new URLSearchParams(location.search)) {
  const select = $("#weights");
  if (!select) return;
  const models = await api("/models").catch(() => []);
  replaceChildren(
    select,
    el("option", { value: "" }, "Scratch (train LoRITa from a random init)"),
    models.map((m) => el("option", { value: m.reference, "data-arch": m.arch }, `${m.name} (${m.arch})`)),
  );
  select.addEventListener("change", () => {
    const option = select.selectedOptions[0];
    if (option?.dataset.arch) selectArch(option.dataset.arch);
  });
  const wanted = query.get("weights");
  if (wanted && models.some((m) => m.reference === wanted)) {
    select.value = wanted;
    selectArch(query.get("arch") || select.selectedOptions[0].dataset.arch);
  }
}
