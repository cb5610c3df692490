// Charts drawn by uPlot (vendored, pinned: VENDORED.md), with axes, grid, hover values in a legend
// below the plot (never over the data); and the confusion matrix as a table shaded by row share.
import { h, num, table, view } from "./dom.js";

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#555555", "#bcbd22"];

// Series of [x, y] points on one x axis: uPlot wants the x values once and each series aligned to them.
function aligned(series) {
  const xs = [...new Set(series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
  return [xs, ...series.map((s) => {
    const at = new Map(s.points);
    return xs.map((x) => (at.has(x) ? at.get(x) : null));
  })];
}

// A figure holding one line chart; `series` is [{label, points: [[x, y], ...]}]. With `time` ({since,
// until} in Unix seconds) x is a clock over that span and y starts at 0 (rates, latencies, ratios).
export function lineChart(title, xLabel, yLabel, series, time = null) {
  const plot = h("div", { class: "plot" });
  const figure = h("figure", { class: "chart", "data-metric": yLabel }, h("figcaption", {}, title), plot);
  const drawn = series.filter((s) => s.points.length);
  if (!drawn.length) { plot.append(h("p", { class: "hint" }, `no ${yLabel} recorded yet`)); return figure; }
  const width = Math.max(260, Math.min(720, view.clientWidth - 16));
  const opts = {
    width,
    height: 240,
    scales: time ? {
      x: { time: true, range: [time.since, time.until] },
      y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] },
    } : { x: { time: false } },
    axes: [
      time ? { label: xLabel, grid: { show: true } } : { label: xLabel, grid: { show: true }, incrs: [1, 2, 5, 10, 20, 50, 100] },
      { label: yLabel, grid: { show: true }, size: 56, values: (u, ticks) => ticks.map((t) => num(t)) },
    ],
    series: [
      time ? { label: xLabel, value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(11, 19)) } : { label: xLabel },
      ...drawn.map((s, i) => ({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        spanGaps: true,
        points: { show: true, size: 6 },
        value: (u, v) => (v === null || v === undefined ? "–" : num(v)),
      })),
    ],
    legend: { live: true },
  };
  if (time) opts.tzDate = (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); // the axis says UTC
  // uPlot builds its DOM with createElement and textContent, and styles through the CSSOM: the CSP holds.
  figure.uplot = new window.uPlot(opts, aligned(drawn), plot);
  return figure;
}

// The confusion matrix as a table: rows are the true class, columns the predicted; each cell shaded
// by its share of the row (ten classes in console.css, so the page needs no inline style).
export function confusionMatrix(evaluation, caption) {
  const labels = evaluation.labels;
  const rows = evaluation.confusion.map((counts, i) => {
    const total = counts.reduce((a, b) => a + b, 0);
    return [h("th", { scope: "row" }, labels[i]), ...counts.map((n, j) => {
      const share = total ? n / total : 0;
      return h("td", {
        class: `heat heat-${Math.min(9, Math.round(share * 9))}${i === j ? " diagonal" : ""}`,
        title: `true ${labels[i]}, predicted ${labels[j]}: ${n} (${(share * 100).toFixed(1)}% of the row)`,
      }, String(n));
    })];
  });
  const corner = h("th", { scope: "col" }, "true ↓ / predicted →");
  return table({ id: "confusion", class: "confusion" }, [corner, ...labels], rows, caption);
}

export function perClass(evaluation, caption) {
  const rows = evaluation.per_class.map((c) => [h("th", { scope: "row" }, c.label),
    num(c.precision), num(c.recall), num(c.f1), String(c.support)]);
  return table({ id: "per-class" }, ["Class", "Precision", "Recall", "F1", "Support"], rows, caption);
}

// The curves of runs: loss (training and validation) and every metric any epoch recorded.
export function runCurves(runs) {
  const label = (r) => `${r.model_name} ${r.job_id}`;
  const one = runs.length === 1;
  const loss = runs.flatMap((r) => [
    { label: one ? "training loss" : `${label(r)} training`, points: r.epochs.filter((e) => e.loss != null).map((e) => [e.epoch, e.loss]) },
    { label: one ? "validation loss" : `${label(r)} validation`, points: r.epochs.filter((e) => e.val_loss != null).map((e) => [e.epoch, e.val_loss]) },
  ]);
  const names = [...new Set(runs.flatMap((r) => r.epochs.flatMap((e) => Object.keys(e.metrics || {}))))].sort();
  return [
    lineChart("Loss per epoch", "epoch", "loss", loss),
    ...names.map((m) => lineChart(`${m} per epoch`, "epoch", m, runs.map((r) => ({
      label: one ? m : label(r),
      points: r.epochs.filter((e) => e.metrics && Object.hasOwn(e.metrics, m)).map((e) => [e.epoch, Number(e.metrics[m])]),
    })))),
  ];
}

// Serving per version over time (GET /v1/models/{name}/serving): request rate, p50/p99 latency, error
// ratio and online accuracy, one series per version so a canary reads against its incumbent.
export function servingCharts(serving) {
  const seconds = (iso) => new Date(iso).getTime() / 1000;
  const at = (p) => seconds(p.at);
  const span = { since: seconds(serving.since), until: seconds(serving.until) };
  const per = (field, suffix = "") => serving.versions.map((v) => ({
    label: `v${v.version}${suffix}`,
    points: v.points.filter((p) => p[field] !== null && p[field] !== undefined).map((p) => [at(p), p[field]]),
  }));
  return [
    lineChart("Request rate per version", "time (UTC)", "requests/s", per("rate_per_s"), span),
    lineChart("Latency per version (p50, p99)", "time (UTC)", "latency ms", [...per("p50_ms", " p50"), ...per("p99_ms", " p99")], span),
    lineChart("Error ratio per version", "time (UTC)", "error ratio", per("error_ratio"), span),
    lineChart("Online accuracy per version", "time (UTC)", "online accuracy", per("accuracy"), span),
  ];
}

// A regression's held-out errors: the residual histogram (actual - predicted, per bin centre), actual
// against predicted for a sample of rows, and the residuals' quantiles, all in the label's units.
export function residualCharts(evaluation, version) {
  const { edges, counts } = evaluation.residuals;
  const centres = counts.map((c, i) => [(edges[i] + edges[i + 1]) / 2, c]);
  const pairs = [...evaluation.pairs].sort((a, b) => a[0] - b[0]);
  const q = evaluation.quantiles;
  const figures = [
    lineChart(`Residuals of version ${version} (held-out split)`, "actual − predicted", "rows",
      [{ label: "rows per bin", points: centres }]),
    lineChart(`Predicted against actual, version ${version}`, "actual", "predicted",
      [{ label: "predicted", points: pairs }, { label: "perfect", points: pairs.map(([a]) => [a, a]) }]),
  ];
  figures[0].id = "residuals";
  const rows = Object.entries(q).map(([k, v]) => [h("th", { scope: "row" }, k), num(v)]);
  return [...figures, table({ id: "residual-quantiles" }, ["Quantile", "Residual"], rows,
    `Residual quantiles of version ${version}`)];
}
