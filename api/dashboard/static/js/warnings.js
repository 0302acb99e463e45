// Reading the Result's warnings ({kind, message, advice}): what must stop a result
// from looking like a win, and how loudly each kind is shown.

// A model that did not learn makes every size saving meaningless: shown in red,
// and the size figures lose their "smaller" badges.
export const BLOCKING_KINDS = ["did_not_learn"];

const TITLES = {
  did_not_learn: "The model did not learn",
  compressed_far_below: "The compressed model is far below the uncompressed one",
  baseline_better: "Plain training did better",
};

export function warningsOf(source) {
  const list = source?.warnings ?? source?.result?.warnings ?? source?.summary?.warnings;
  return Array.isArray(list) ? list.filter((w) => w && typeof w === "object") : [];
}

export function isBlocking(warning) {
  return BLOCKING_KINDS.includes(warning.kind);
}

export function didNotLearn(source) {
  return warningsOf(source).some(isBlocking);
}

export function warningTitle(warning) {
  return TITLES[warning.kind] || String(warning.kind || "Warning").replaceAll("_", " ");
}
