// The job page's downloads: the artifact files, the zip of all of them, and how to
// load the model.
import { API, api, itemsOf } from "../api.js";
import { $, el, replaceChildren } from "../dom.js";
import { bytes } from "../format.js";

const ARTIFACT_NOTES = {
  "model.safetensors": "Dense weights in the original structure, truncated",
  "lowrank.safetensors": "Low-rank model: each truncated layer as two smaller layers",
  "lowrank.json": "Structure of the low-rank model (to rebuild it)",
  "model.onnx": "ONNX export of the low-rank model, preprocessing included",
  "model.int8.onnx": "The low-rank ONNX model in 8 bits (int8 weights and activations), same input",
  "report.json": "Everything on this page as JSON",
  "MODEL_CARD.md": "What each file is, the input, the accuracies, how to load it",
};

// The input the exported models take (the result's input_contract), as code text.
function inputShapeText(result) {
  const contract = result?.input_contract;
  return contract ? `(batch, ${contract.shape.join(", ")})` : "(batch, C, H, W)";
}

function loadHowto(result) {
  const contract = result?.input_contract;
  const shape = inputShapeText(result);
  const values = contract
    ? `raw ${contract.dtype} values as the dataset stores them (${contract.value_range.join(" to ")}), layout ${contract.layout}; the models normalise them themselves`
    : "normalised tensors, as in training";
  const torchCode = [
    "import torch, lorita",
    'model = lorita.load_lowrank("folder")  # the unpacked zip',
    `predicted = model(torch.as_tensor(images)).argmax(1)  # images: ${shape}`,
  ].join("\n");
  const onnxCode = [
    "import numpy as np, onnxruntime as ort",
    'session = ort.InferenceSession("folder/model.onnx")',
    `(logits,) = session.run(None, {"input": images.astype(np.float32)})  # ${shape}`,
  ].join("\n");
  return el(
    "details",
    { id: "load-howto" },
    el("summary", {}, "How to load this"),
    el("p", { class: "sub" }, `Input: ${values}. model.onnx takes float32 only. MODEL_CARD.md has the details.`),
    el("pre", {}, el("code", {}, torchCode)),
    el("pre", {}, el("code", {}, onnxCode)),
  );
}

export async function renderArtifacts(job) {
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
  if (items.length) {
    const bundle = `${API}/jobs/${encodeURIComponent(job.id)}/artifacts.zip`;
    list.prepend(
      el(
        "li",
        {},
        el("a", { class: "button download", href: bundle, download: `lorita-${job.id}.zip`, "aria-label": "Download all artifacts as one zip" }, el("span", { class: "file-name" }, "Download all (zip)")),
        el("span", { class: "sub" }, "Every file above in one folder, with MODEL_CARD.md"),
      ),
    );
    $("#load-howto")?.remove();
    list.after(loadHowto(job.result));
  }
  $("#downloads").hidden = !items.length;
}
