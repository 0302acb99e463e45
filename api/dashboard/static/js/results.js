// Reading the engine's Result: which accuracy a size curve can honestly show.

// Test accuracy where the engine measured it along the whole curve; otherwise the
// validation accuracy the ranks were chosen on (the test set is never used to choose).
export function accuracyKey(blocks) {
  const curves = blocks.map((block) => block?.curve || []).filter((curve) => curve.length);
  const tested = curves.length > 0 && curves.every((curve) => curve.every((p) => p.test_accuracy != null));
  return tested ? "test_accuracy" : "val_accuracy";
}

// The chosen point's accuracy on the same split as the curve it sits on.
export function chosenAccuracy(block, key) {
  return key === "test_accuracy" ? block?.accuracy?.compressed : block?.val_accuracy?.compressed;
}

export function accuracyLabel(key) {
  return key === "test_accuracy" ? "test accuracy" : "validation accuracy";
}

// ---------- comparisons (Result.comparisons, Result.verdict) ----------

// The names core/method_names.py gives: how each model was brought to its size, and
// "+ fine-tune (K ep)" when it was fine-tuned after that (any of them may be).
export const COMPARISON_LABELS = {
  lorita: "LoRITa",
  plain: "Plain N = 1, truncated (own search)",
  "plain+finetune": "Plain N = 1, truncated (LoRITa's size)",
  pruning: "Torch-Pruning (LoRITa's size)",
};

const fineTuned = (epochs) => (epochs ? ` + fine-tune (${epochs} ep)` : "");

// The learning rate a fine-tuning kept, of those it tried (LoRITa's or a comparison's).
const rateNote = (block) => {
  const trials = block.finetune_lr_trials || [];
  if (block.finetune_lr_scale == null || trials.length < 2) return "";
  const tried = trials.map((t) => `${t.lr_scale}x`).join(" and ");
  return `fine-tuned at ${block.finetune_lr_scale}x the training's learning rate, the better on the validation split of ${tried}`;
};

// One row per model of the side-by-side table: the uncompressed N = 1 model every
// comparison starts from, LoRITa's compressed model, then each comparison. Shares are
// of the N = 1 model's size; latency is the CPU one, measured in interleaved rounds.
export function comparisonRows(result) {
  const blocks = Object.entries(result?.comparisons || {});
  if (!blocks.length) return [];
  const best = result.verdict?.best;
  const [, first] = blocks[0];
  const plainParams = first.params?.uncompressed || result.params?.uncompressed;
  const plainFlops = first.flops?.uncompressed || result.flops?.uncompressed;
  const cpu = (block, side) => ({
    b1: block?.latency_cpu?.batch_1?.[side],
    b64: block?.latency_cpu?.batch_64?.[side],
  });
  const rows = [
    {
      method: "n1",
      label: result.pretrained ? "Plain N = 1 from your model, uncompressed" : "Plain N = 1, uncompressed",
      accuracy: first.accuracy?.uncompressed,
      paramsKept: 1,
      flopsKept: 1,
      ...cpu(first, "uncompressed"),
      reference: true,
    },
    {
      method: "lorita",
      label: `LoRITa N = ${result.factor ?? "?"}${fineTuned(result.finetune_history?.length ?? 0)}`,
      accuracy: result.accuracy?.compressed,
      paramsKept: plainParams ? result.params?.compressed / plainParams : null,
      flopsKept: plainFlops ? result.flops?.compressed / plainFlops : null,
      ...cpu(result, "compressed"),
      note: rateNote(result) || null,
    },
  ];
  for (const [method, block] of blocks) {
    rows.push({
      method,
      label: `${COMPARISON_LABELS[method] || method}${fineTuned(block.finetune_epochs)}`,
      accuracy: block.accuracy?.compressed,
      paramsKept: block.params_kept,
      flopsKept: block.flops_kept,
      ...cpu(block, "compressed"),
      note: [block.note, rateNote(block)].filter(Boolean).join("; ") || null,
    });
  }
  for (const row of rows) row.best = row.method === best;
  return rows;
}

// ---------- int8 (Result.int8) ----------

// Rows of the before/after table for the int8 model: "before" is the dense float32
// model, "after" model.int8.onnx, both run with onnxruntime on the CPU on raw input.
export function int8Pairs(result) {
  const block = result?.int8;
  if (!block?.lowrank_int8 || !block.dense_fp32) return [];
  const dense = block.dense_fp32;
  const int8 = block.lowrank_int8;
  const pair = (get) => ({ uncompressed: get(dense), compressed: get(int8) });
  return [
    { label: "INT8 test accuracy (onnxruntime)", kind: "accuracy", pair: pair((m) => m.test_accuracy) },
    { label: "INT8 file size (model.int8.onnx)", kind: "bytes", pair: pair((m) => m.file_size_bytes) },
    { label: "INT8 latency, CPU batch 1", kind: "ms", pair: pair((m) => m.latency_ms?.batch_1) },
    { label: "INT8 latency, CPU batch 64", kind: "ms", pair: pair((m) => m.latency_ms?.batch_64) },
  ];
}

// One sentence on what the int8 numbers are and which file to ship.
export function int8Note(result) {
  const block = result?.int8;
  if (!block) return "";
  const calibration = block.calibration || {};
  const ratio = block.compression_ratio ? `${block.compression_ratio.toFixed(1)}× smaller than the dense float32 model in all. ` : "";
  const verdict = block.within_tolerance
    ? `It costs ${(100 * block.accuracy_cost).toFixed(2)} pt on the validation split, within the tolerance: ${block.file} is the recommended file.`
    : `It costs ${(100 * block.accuracy_cost).toFixed(2)} pt on the validation split, more than the tolerance of ${(100 * block.tolerance).toFixed(2)} pt: use ${block.recommended} (float32).`;
  return (
    `INT8 rows: the dense float32 model before, model.int8.onnx after, run with onnxruntime on the CPU ` +
    `(${block.threads} thread, median of ${block.latency_rounds} interleaved rounds); activations calibrated on ` +
    `${calibration.samples} training samples. ${ratio}${verdict}`
  );
}
