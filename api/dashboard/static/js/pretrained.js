// A job that started from the user's uploaded model: "from your model (accuracy X)"
// and the comparison of LoRITa's result with the plain SVD truncation of that model
// at the same budget. Reads only the Result's `pretrained` and `recipe` blocks.
import { $, el, replaceChildren } from "./dom.js";

const pct = (value) => (value == null ? "–" : `${(100 * value).toFixed(2)}%`);
const count = (value) => (value == null ? "–" : Number(value).toLocaleString("en"));
const fewer = (kept) => (kept == null ? "" : `${(100 * (1 - kept)).toFixed(1)}% fewer`);

// Rows of the comparison table: [label, accuracy, params, params vs your model].
export function pretrainedRows(result) {
  const mine = result?.pretrained;
  if (!mine) return [];
  const plain = mine.plain_truncation || {};
  const lorita = result.params?.compressed;
  return [
    ["Your model, as uploaded", mine.accuracy, mine.params, ""],
    ["Plain SVD truncation of it", plain.accuracy, plain.params, fewer(plain.params_kept)],
    ["LoRITa from your model", result.accuracy?.compressed, lorita, fewer(lorita / mine.params)],
  ];
}

export function renderPretrained(result) {
  const section = $("#pretrained-section");
  if (!section) return;
  const mine = result?.pretrained;
  const recipe = result?.recipe;
  section.hidden = !mine;
  if (!mine) return;
  replaceChildren(
    $("#pretrained-title"),
    `From your model (accuracy ${pct(mine.accuracy)})`,
  );
  replaceChildren(
    $("#pretrained-body"),
    pretrainedRows(result).map(([label, accuracy, params, change]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, label),
        el("td", { class: "num" }, pct(accuracy)),
        el("td", { class: "num" }, count(params)),
        el("td", { class: "num" }, change),
      ),
    ),
  );
  const note = recipe
    ? `Recipe: ${recipe.name}, ${recipe.epochs} epoch${recipe.epochs === 1 ? "" : "s"} of ${recipe.optimizer} at learning rate ${recipe.lr}, weight decay ${recipe.weight_decay}. `
    : "";
  replaceChildren(
    $("#pretrained-note"),
    `${note}The truncation keeps the same share of parameters as LoRITa; its ranks are chosen on the validation split, and every accuracy is on the test split.`,
  );
}
