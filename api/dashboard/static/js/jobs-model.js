// One place that reads the API's job objects, so pages do not depend on field spelling.
import { drop } from "./format.js";
import { warningsOf } from "./warnings.js";

export const FINAL_STATES = ["succeeded", "failed", "cancelled"];

export function jobView(job) {
  const spec = job.spec || {};
  const result = job.result || null;
  const summary = job.summary || result || {};
  const accuracy = summary.accuracy || {};
  const params = summary.params || {};
  const flops = summary.flops || {};
  const state = job.status || job.state || "unknown";
  return {
    id: job.id,
    state,
    final: FINAL_STATES.includes(state),
    arch: job.arch || spec.model?.arch || "?",
    dataset: job.dataset || spec.data?.dataset || "?",
    factor: job.factor ?? spec.lorita?.factor ?? result?.factor ?? 3,
    progress: state === "succeeded" ? 1 : Number(job.progress) || 0,
    stage: job.stage || null,
    createdAt: job.created_at,
    startedAt: job.started_at,
    finishedAt: job.finished_at,
    worker: job.worker,
    failureReason: job.failure_reason || job.error || null,
    failureKind: job.failure_kind || null,
    retryOf: job.retry_of || null,
    spec,
    result,
    accuracyAfter: accuracy.compressed ?? null,
    accuracyBefore: accuracy.uncompressed ?? null,
    paramsDrop: drop(params.uncompressed, params.compressed),
    flopsDrop: drop(flops.uncompressed, flops.compressed),
    // The plain N = 1 model's test accuracy (list rows carry it; details have the result).
    baselineAccuracy: job.baseline_accuracy?.uncompressed ?? result?.baseline?.accuracy?.uncompressed ?? null,
    warnings: warningsOf(job),
  };
}

const STAGE_LABELS = {
  queued: "Waiting for a worker",
  train: "Training",
  baseline: "Training the N = 1 baseline",
  rank_search: "Choosing ranks",
  finetune: "Fine-tuning",
  export: "Exporting",
  quantize: "Quantizing to int8",
  done: "Done",
};

export function stageLabel(stage) {
  return STAGE_LABELS[stage] || stage || "";
}
