// Plotly wrappers with one look for every chart. Plotly is loaded as a classic
// deferred script (window.Plotly); page modules run after it.

const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d"];

export function color(index) {
  return PALETTE[index % PALETTE.length];
}

function cssVar(name, fallback) {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

export function baseLayout(overrides = {}) {
  const text = cssVar("--text", "#1d2330");
  const grid = cssVar("--grid", "#e4e7ee");
  const axis = (extra = {}) => ({
    gridcolor: grid,
    zerolinecolor: grid,
    linecolor: grid,
    automargin: true,
    ...extra,
  });
  const layout = {
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: text },
    margin: { l: 56, r: 16, t: 12, b: 44 },
    hovermode: "x unified",
    // Above the plot: below it, a legend collides with the x-axis title on small charts.
    legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom", bgcolor: "rgba(0,0,0,0)" },
    colorway: PALETTE,
    ...overrides,
  };
  layout.xaxis = axis(overrides.xaxis);
  layout.yaxis = axis(overrides.yaxis);
  if (overrides.title && typeof overrides.title === "string") {
    layout.title = { text: overrides.title, x: 0, xanchor: "left", font: { size: 14 } };
  }
  return layout;
}

const CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
};

export function plotlyReady() {
  return typeof window.Plotly !== "undefined";
}

// Plotly's "responsive" follows the window only; a chart whose box changes for
// another reason (a grid reflowing as sections appear) is resized here.
const resizer =
  typeof ResizeObserver === "undefined"
    ? null
    : new ResizeObserver((entries) => {
        for (const entry of entries) {
          if (entry.target.classList.contains("has-plot")) window.Plotly.Plots.resize(entry.target);
        }
      });

export function draw(node, traces, layout) {
  if (!plotlyReady()) {
    node.textContent = "Charts are unavailable: the plotting library did not load.";
    return;
  }
  const first = !node.classList.contains("has-plot");
  node.classList.add("has-plot");
  window.Plotly.react(node, traces, baseLayout(layout), CONFIG);
  if (first) resizer?.observe(node);
}

export function purge(node) {
  resizer?.unobserve(node);
  if (plotlyReady()) window.Plotly.purge(node);
  node.classList.remove("has-plot");
}

// ---------- accuracy axes ----------

const NICE_STEPS = [1, 2, 2.5, 5, 10];

// Decimals a percent label needs to show a step of `fraction` exactly (0.005 -> 1).
export function percentDecimals(fraction) {
  const value = Math.abs(fraction) * 100;
  for (let digits = 0; digits < 6; digits += 1) {
    const scaled = value * 10 ** digits;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return digits;
  }
  return 6;
}

// A percent y axis whose ticks and labels agree: Plotly picks the tick step on its
// own, so a fixed ".0%" format printed half-percent ticks as repeated whole
// percents ("98%, 98%, 97%"). Here the step is chosen from the data (about `ticks`
// of them, a 1-2-2.5-5 multiple of a power of ten) and the label shows exactly the
// decimals that step needs.
export function percentAxis(values, { ticks = 6, minSpan = 0.01 } = {}) {
  const finite = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!finite.length) return { tickformat: ".0%" };
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < minSpan) {
    const middle = (hi + lo) / 2;
    lo = middle - minSpan / 2;
    hi = middle + minSpan / 2;
  }
  const raw = (hi - lo) / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = NICE_STEPS.map((m) => m * magnitude).find((s) => s >= raw * (1 - 1e-9));
  const pad = (hi - lo) * 0.06;
  return {
    tickmode: "linear",
    tick0: 0,
    dtick: step,
    tickformat: `.${percentDecimals(step)}%`,
    range: [lo - pad, hi + pad],
  };
}
