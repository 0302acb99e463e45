// Number, size and time formatting shared by the pages.

const nf = new Intl.NumberFormat(undefined);

export function integer(value) {
  return value == null || Number.isNaN(value) ? "—" : nf.format(Math.round(value));
}

export function percent(fraction, digits = 1) {
  if (fraction == null || Number.isNaN(fraction)) return "—";
  return `${(fraction * 100).toFixed(digits)}%`;
}

// Percentage points between two accuracies, signed: "−0.3 pt".
export function points(delta, digits = 1) {
  if (delta == null || Number.isNaN(delta)) return "—";
  const value = delta * 100;
  const sign = value > 0.0005 ? "+" : value < -0.0005 ? "−" : "±";
  return `${sign}${Math.abs(value).toFixed(digits)} pt`;
}

// Relative change of a size: 38 120 vs 648 010 -> "−94.1%".
export function change(before, after, digits = 1) {
  if (!before || after == null) return "—";
  const value = ((after - before) / before) * 100;
  const sign = value > 0 ? "+" : value < 0 ? "−" : "±";
  return `${sign}${Math.abs(value).toFixed(digits)}%`;
}

// Share removed: 0.941 -> "94.1% smaller" style number (returns the fraction).
export function drop(before, after) {
  if (!before || after == null) return null;
  return 1 - after / before;
}

export function compact(value) {
  if (value == null || Number.isNaN(value)) return "—";
  const abs = Math.abs(value);
  const units = [
    [1e12, "T"],
    [1e9, "G"],
    [1e6, "M"],
    [1e3, "k"],
  ];
  for (const [size, unit] of units) {
    if (abs >= size) return `${(value / size).toFixed(abs / size >= 100 ? 0 : 1)}${unit}`;
  }
  return String(Math.round(value));
}

export function bytes(value) {
  if (value == null || Number.isNaN(value)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size.toFixed(unit === 0 ? 0 : size >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function ms(value) {
  if (value == null || Number.isNaN(value)) return "—";
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toPrecision(3)} ms`;
}

export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function parseTime(value) {
  if (!value) return null;
  // Timestamps without a zone are UTC on the server.
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function relativeTime(value, now = Date.now()) {
  const date = parseTime(value);
  if (!date) return "—";
  const seconds = (date.getTime() - now) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  if (abs < 7 * 86400) return rtf.format(Math.round(seconds / 86400), "day");
  return dtf.format(date);
}

export function absoluteTime(value) {
  const date = parseTime(value);
  return date ? dtf.format(date) : "";
}

export function shortId(id) {
  const text = String(id ?? "");
  return text.length > 10 ? text.slice(0, 8) : text;
}
