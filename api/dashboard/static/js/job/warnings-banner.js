// The job page's warnings banner (the Result's warnings, right under the status).
import { $, el, replaceChildren } from "../dom.js";
import { isBlocking, warningTitle, warningsOf } from "../warnings.js";

// The Result's warnings, above everything else: a model that did not learn is no win.
export function renderWarnings(result) {
  const warnings = warningsOf(result);
  const box = $("#result-warnings");
  box.hidden = !warnings.length;
  box.dataset.blocking = String(warnings.some(isBlocking));
  replaceChildren(
    box,
    warnings.map((warning) =>
      el(
        "div",
        { class: `result-warning ${isBlocking(warning) ? "blocking" : ""}`, "data-kind": warning.kind || "" },
        el("h3", {}, warningTitle(warning)),
        warning.message ? el("p", {}, warning.message) : null,
        warning.advice ? el("p", { class: "advice" }, el("strong", {}, "What to try: "), warning.advice) : null,
      ),
    ),
  );
}
