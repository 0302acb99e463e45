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
