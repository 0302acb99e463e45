// New job form: builds a job spec from the fields, posts it, and shows the API's
// validation errors next to the fields they name.
import "../layout.js";
import { ApiError, DASHBOARD_API, api } from "../api.js";
import { datasetViews } from "../datasets-model.js";
import { $, $$, el, replaceChildren } from "../dom.js";
import { setupWeightsPicker } from "../weights-picker.js";

const form = $("#job-form");
const OTHER_ARCH = "__other__";
let recipes = {};
let torchvisionRecipe = null;
let specDefaults = {};

// ---------- options ----------

async function loadOptions() {
  const [options, datasets] = await Promise.all([
    api("/options", { base: DASHBOARD_API }).catch(() => null),
    api("/datasets").catch(() => null),
  ]);
  fillArchs(options);
  fillDatasets(datasets ? datasetViews(datasets) : []);
  specDefaults = options?.defaults || {};
  showSpecDefaults();
}

// A field shown in another unit than the API's (data-scale: percent or points) shows
// the spec default as its placeholder in the unit it displays, so a blank field and
// its placeholder mean the same number.
function inShownUnit(input, value) {
  const scale = Number(input.dataset.scale || 1);
  return String(Number((value / scale).toPrecision(12)));
}

function showSpecDefaults() {
  for (const input of $$("[data-default]", form)) {
    const value = specDefaults[input.dataset.default];
    if (typeof value !== "number") continue;
    input.placeholder = inShownUnit(input, value);
    const shown = $(`#${input.id}-default`);
    if (shown) shown.textContent = input.placeholder;
  }
}

function fillArchs(options) {
  const select = $("#arch");
  const archs = options?.archs || ["fcn", "vgg11", "vgg13", "vgg16", "vgg19", "resnet20", "resnet56", "simplevit"];
  recipes = options?.recipes || {};
  torchvisionRecipe = options?.torchvision_recipe || null;
  replaceChildren(
    select,
    archs.map((arch) => el("option", { value: arch }, arch)),
    el("option", { value: OTHER_ARCH }, "other: a torchvision model…"),
  );
}

function fillDatasets(views) {
  const select = $("#dataset");
  const builtin = views.filter((v) => v.kind === "built-in");
  const uploaded = views.filter((v) => v.kind !== "built-in");
  const label = (v) => (v.numClasses ? `${v.name} (${v.numClasses} classes)` : v.name);
  replaceChildren(
    select,
    builtin.length
      ? el("optgroup", { label: "Built-in" }, builtin.map((v) => el("option", { value: v.reference }, label(v))))
      : null,
    uploaded.length
      ? el("optgroup", { label: "Uploaded" }, uploaded.map((v) => el("option", { value: v.reference }, label(v))))
      : null,
  );
  if (!views.length) {
    for (const name of ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100"]) {
      select.append(el("option", { value: name }, name));
    }
  }
}

function recipeFor(arch) {
  if (arch === OTHER_ARCH) return torchvisionRecipe || {};
  return recipes[arch] || {};
}

// Blank means "recipe default": show that default as the placeholder.
function showRecipe() {
  const arch = $("#arch").value;
  $("#tv-arch-field").hidden = arch !== OTHER_ARCH;
  const recipe = recipeFor(arch);
  for (const field of $$("[data-recipe]", form)) {
    const value = recipe[field.dataset.recipe];
    if (field.tagName === "SELECT") {
      const first = field.options[0];
      const shown = value == null || value === "" ? "" : ` (${value === true ? "on" : value === false ? "off" : value})`;
      first.textContent = `Recipe default${shown}`;
    } else {
      field.placeholder = value == null ? "recipe default" : String(value);
    }
  }
}

function showTargetFields() {
  const kind = form.elements["target-kind"].value;
  for (const field of $$("[data-target]", form)) {
    field.hidden = !field.dataset.target.split(" ").includes(kind);
  }
  const budgetLabel = $("label[for=budget]");
  budgetLabel.textContent = kind === "flops" ? "Share of FLOPs to keep (%)" : "Share of parameters to keep (%)";
}

// ---------- building the spec ----------

function readValue(input) {
  const raw = input.type === "checkbox" ? input.checked : input.value.trim();
  if (raw === "" || raw == null) return undefined;
  let value = raw;
  if (input.dataset.type === "int" || input.dataset.type === "float") {
    value = input.type === "number" && !Number.isNaN(input.valueAsNumber) ? input.valueAsNumber : Number(raw);
    if (Number.isNaN(value)) value = raw; // let the server name the problem
    else if (input.dataset.scale) value = Number((value * Number(input.dataset.scale)).toPrecision(12));
  } else if (input.dataset.type === "bool") {
    value = raw === "true";
  } else if (input.dataset.type === "list") {
    value = raw.split(",").map(Number);
  }
  return value;
}

function setPath(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) node = node[part] ??= {};
  node[parts.at(-1)] = value;
}

function buildSpec() {
  const spec = { model: {}, data: {}, lorita: {}, train: {}, compress: {} };
  for (const input of $$("[name]", form)) {
    if (!input.name.includes(".") || input.closest("[hidden]")) continue;
    const value = readValue(input);
    if (value !== undefined) setPath(spec, input.name, value);
  }
  if ($("#arch").value === OTHER_ARCH) {
    const name = $("#tv-arch").value.trim();
    spec.model.arch = name.startsWith("tv:") ? name : `tv:${name}`;
  }
  const kind = form.elements["target-kind"].value;
  if (kind === "accuracy") {
    spec.compress.strategy = "accuracy";
  } else {
    spec.compress.strategy = "budget";
    spec.compress.target = kind;
  }
  spec.comparisons = $$("input[name=comparison]:checked", form).map((input) => input.value);
  for (const key of ["train", "compress"]) if (!Object.keys(spec[key]).length) delete spec[key];
  return spec;
}

// ---------- errors ----------

function clearErrors() {
  for (const error of $$(".field-error", form)) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const input of $$("[aria-invalid]", form)) input.removeAttribute("aria-invalid");
  for (const field of $$(".invalid", form)) field.classList.remove("invalid");
  $("#form-errors").hidden = true;
}

// Fields shown in percent: restate the server's bounds ("less than or equal to 1") in percent.
function inPercent(message) {
  return message.replace(/(than(?: or equal to)?) (-?\d+(?:\.\d+)?)/g, (_, words, n) => `${words} ${Number(n) * 100}%`);
}

// The tolerance field is in percentage points; the server speaks of a fraction
// ("a fraction of accuracy: 0.01 means one percentage point; allowed 0 to 0.2 ...").
// Restate its bounds in points and drop the fraction wording, which would only
// mislead next to a field in points.
function inPoints(message, input) {
  const points = (n) => `${Number((Number(n) * 100).toPrecision(12))}`;
  const range = /allowed (-?[\d.]+) to (-?[\d.]+)/.exec(message);
  if (range) {
    return `Enter ${points(range[1])} to ${points(range[2])} percentage points (you entered ${input.value.trim() || "nothing"}).`;
  }
  return message.replace(/(than(?: or equal to)?) (-?\d+(?:\.\d+)?)/g, (_, words, n) => `${words} ${points(n)} points`);
}

function cleanMessage(message) {
  return String(message || "is not valid").replace(/^Value error, /, "");
}

// ["body", "train", "lr"] -> the field container for "train.lr" (or its nearest parent).
function fieldFor(loc) {
  const parts = (loc || []).filter((p) => p !== "body" && typeof p === "string");
  if (parts[0] === "model" && parts[1] === "arch" && $("#arch").value === OTHER_ARCH) return $("#tv-arch-field");
  for (let n = parts.length; n > 0; n -= 1) {
    const path = parts.slice(0, n).join(".");
    const field = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (field && !field.hidden) return field;
  }
  return null;
}

function showFieldError(field, message) {
  const error = field.id === "compress-fieldset" ? $("#compress-error") : field.querySelector(".field-error");
  const input = field.querySelector("input:not([type=radio]), select");
  const scaled = input?.dataset.scale === "0.01";
  const text = !scaled ? message : input.dataset.unit === "points" ? inPoints(message, input) : inPercent(message);
  error.textContent = error.hidden || !error.textContent ? text : `${error.textContent} ${text}`;
  error.hidden = false;
  field.classList.add("invalid");
  input?.setAttribute("aria-invalid", "true");
  return input;
}

function labelOf(field) {
  return field.querySelector("label")?.textContent || field.querySelector("legend")?.textContent || "";
}

function showErrors(errors) {
  clearErrors();
  const summary = [];
  let firstInput = null;
  for (const error of errors) {
    const message = cleanMessage(error.msg);
    const field = fieldFor(error.loc);
    if (field) {
      const input = showFieldError(field, message);
      firstInput ??= input;
      const target = input?.id || field.id;
      summary.push(el("li", {}, el("a", { href: `#${target}` }, labelOf(field).trim()), `: ${message}`));
    } else {
      summary.push(el("li", {}, message));
    }
  }
  const box = $("#form-errors");
  replaceChildren(box, el("p", {}, el("strong", {}, "The job was not submitted. "), "Fix the fields below:"), el("ul", {}, summary));
  box.hidden = false;
  (firstInput || box).focus();
}

// ---------- submit ----------

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#submit-job");
  clearErrors();
  if ($("#arch").value === OTHER_ARCH && !$("#tv-arch").value.trim()) {
    showErrors([{ loc: ["body", "model", "arch"], msg: "Enter a torchvision model name, e.g. resnet18." }]);
    return;
  }
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    const created = await api("/jobs", { method: "POST", json: buildSpec() });
    location.assign(`/jobs/${encodeURIComponent(created.id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.validationErrors.length) showErrors(error.validationErrors);
    else showErrors([{ loc: [], msg: error.message }]);
    button.disabled = false;
    button.textContent = "Submit job";
  }
});

// ---------- start, optionally from an earlier job's spec (?from=ID) ----------

function fillFromSpec(spec) {
  const arch = spec.model?.arch || "";
  if (arch.startsWith("tv:")) {
    $("#arch").value = OTHER_ARCH;
    $("#tv-arch").value = arch.slice(3);
  } else if (arch) {
    $("#arch").value = arch;
  }
  for (const input of $$("[name]", form)) {
    if (!input.name.includes(".") || input.name === "model.arch") continue;
    const value = input.name.split(".").reduce((node, key) => node?.[key], spec);
    if (value == null) continue;
    if (input.dataset.scale) input.value = inShownUnit(input, value);
    else input.value = String(value);
  }
  const compress = spec.compress || {};
  const kind = compress.strategy === "budget" ? compress.target || "params" : "accuracy";
  form.elements["target-kind"].value = kind;
  const compared = new Set([...(spec.comparisons || []), ...(spec.baseline ? ["plain"] : [])]);
  for (const input of $$("input[name=comparison]", form)) input.checked = compared.has(input.value);
}

async function start() {
  await loadOptions();
  await setupWeightsPicker();
  const query = new URLSearchParams(location.search);
  const dataset = query.get("dataset");
  if (dataset) {
    if (!Array.from($("#dataset").options).some((o) => o.value === dataset)) {
      $("#dataset").append(el("option", { value: dataset }, dataset));
    }
    $("#dataset").value = dataset;
  }
  const from = query.get("from");
  if (from) {
    try {
      const job = await api(`/jobs/${encodeURIComponent(from)}`);
      fillFromSpec(job.spec || {});
    } catch {
      /* the form still works from scratch */
    }
  }
  showRecipe();
  showTargetFields();
  $("#arch").addEventListener("change", showRecipe);
  form.addEventListener("change", (event) => {
    if (event.target.name === "target-kind") showTargetFields();
  });
}

start();
