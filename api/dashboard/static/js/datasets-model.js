// Reads GET /datasets in whatever shape it comes: one list, or built-in and uploaded lists.

function uploadedView(item) {
  const info = item.info || {};
  const id = item.id ?? item.dataset_id;
  return {
    kind: "uploaded",
    reference: item.reference || item.ref || (id != null ? `upload:${id}` : item.name),
    name: item.name || item.filename || String(id),
    id,
    numClasses: item.num_classes ?? info.num_classes ?? null,
    inChannels: item.in_channels ?? info.in_channels ?? null,
    imageSize: item.image_size ?? info.image_size ?? null,
    numTrain: info.num_train ?? null,
    numTest: info.num_test ?? null,
    sizeBytes: item.size_bytes ?? null,
    createdAt: item.created_at ?? null,
    fileKind: item.kind && item.kind !== "builtin" && item.kind !== "uploaded" ? item.kind : null,
  };
}

function builtinView(item) {
  if (typeof item === "string") return { kind: "built-in", reference: item, name: item };
  const info = item.info || {};
  return {
    kind: "built-in",
    reference: item.reference || item.name,
    name: item.name,
    numClasses: item.num_classes ?? info.num_classes ?? null,
    inChannels: item.in_channels ?? info.in_channels ?? null,
    imageSize: item.image_size ?? info.image_size ?? null,
    numTrain: item.num_train ?? info.num_train ?? null,
    numTest: item.num_test ?? info.num_test ?? null,
    description: item.description || null,
    // Whether this server already holds the files (null: the API did not say).
    present: firstBoolean(item.present, info.present, item.available, info.available),
    source: item.source || null,
  };
}

function firstBoolean(...values) {
  const found = values.find((v) => typeof v === "boolean");
  return found ?? null;
}

// Whether a built-in set is here, and if not, where the first job that uses it gets it.
export function presenceText(view) {
  if (view.kind !== "built-in" || view.present == null) return "";
  if (view.present) return "on this server";
  return `not on this server yet; the first job fetches it${view.source ? `: ${view.source}` : ""}`;
}

export function datasetViews(data) {
  if (Array.isArray(data)) {
    return data.map((item) =>
      typeof item === "string" || item.builtin || item.kind === "builtin" || item.kind === "built-in"
        ? builtinView(item)
        : uploadedView(item),
    );
  }
  const builtin = data?.builtin || data?.built_in || data?.builtins || [];
  const uploaded = data?.uploaded || data?.uploads || data?.items || [];
  return [...builtin.map(builtinView), ...uploaded.map(uploadedView)];
}

export function sampleCounts(view) {
  if (view.numTrain == null && view.numTest == null) return "—";
  const fmt = (n) => (n == null ? "?" : new Intl.NumberFormat().format(n));
  return `${fmt(view.numTrain)} / ${fmt(view.numTest)}`;
}

export function inputShape(view) {
  if (view.inChannels == null && view.imageSize == null) return "—";
  return `${view.inChannels ?? "?"}×${view.imageSize ?? "?"}×${view.imageSize ?? "?"}`;
}

// reference ("upload:ID") -> display name, for pages that show jobs.
let namesPromise = null;

export function datasetNames(api) {
  namesPromise ??= api("/datasets")
    .then((data) => new Map(datasetViews(data).map((v) => [v.reference, v.name])))
    .catch(() => new Map());
  return namesPromise;
}
