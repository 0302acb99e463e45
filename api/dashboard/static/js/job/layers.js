// The job page's per-layer views: the singular value spectra and the table of ranks.
import { color, draw } from "../charts.js";
import { $, el, replaceChildren } from "../dom.js";
import { integer, percent } from "../format.js";

export function renderSpectra(result) {
  const layers = Object.entries(result.layers || {});
  const traces = [];
  layers.forEach(([name, layer], index) => {
    const values = layer.singular_values || [];
    if (!values.length || !(values[0] > 0)) return;
    const top = values[0];
    const y = values.map((v) => Math.max(v / top, 1e-12));
    const c = color(index);
    traces.push({
      x: y.map((_, i) => i + 1),
      y,
      name,
      legendgroup: name,
      mode: "lines",
      line: { color: c, width: 1.5 },
      hovertemplate: `${name}<br>σ%{x}: %{y:.3g} of σ1<extra></extra>`,
    });
    const rank = layer.rank ?? result.ranks?.[name];
    if (rank && rank <= y.length) {
      traces.push({
        x: [rank],
        y: [y[rank - 1]],
        name: `${name} kept rank`,
        legendgroup: name,
        showlegend: false,
        mode: "markers",
        marker: { color: c, size: 9, line: { color: "#fff", width: 1 } },
        hovertemplate: `${name}: kept rank ${rank} of ${layer.full_rank ?? y.length}<extra></extra>`,
      });
    }
  });
  draw($("#chart-spectrum"), traces, {
    xaxis: {
      title: { text: "index i" },
      ...(layers.some(([, l]) => (l.full_rank || 0) > 200) ? { type: "log", dtick: 1 } : {}),
    },
    yaxis: { title: { text: "σi / σ1 (log)" }, type: "log", dtick: 1, exponentformat: "power" },
    hovermode: "closest",
    showlegend: traces.length <= 40,
  });
}

export function renderRanks(result) {
  const layers = result.layers || {};
  const layerNames = Object.keys(layers).length ? Object.keys(layers) : Object.keys(result.ranks || {});
  replaceChildren(
    $("#ranks-table tbody"),
    layerNames.map((name) => {
      const layer = layers[name] || {};
      const rank = layer.rank ?? result.ranks?.[name];
      const full = layer.full_rank;
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, el("code", {}, name)),
        el("td", { class: "shape" }, layer.shape ? layer.shape.join(" × ") : "—"),
        el("td", { class: "num" }, full ? `${integer(rank)} / ${integer(full)}` : integer(rank)),
        el("td", { class: "num" }, full ? percent(rank / full, 0) : "—"),
        el("td", {}, layer.factorized ? "two layers" : "dense"),
      );
    }),
  );
}
