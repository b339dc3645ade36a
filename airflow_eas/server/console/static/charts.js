// Chart drawing shared by the console (console.js) and the Airflow plugin's rollout view (rollout.js):
// a titled box holding one uPlot chart, or a note when there is nothing to draw. It lies beside the
// vendored uPlot, so both serve it from that one folder.
(() => {
  "use strict";
  const blank = (v) => v === null || v === undefined;

  // table: uPlot's columns (x first). opts: series (uPlot series; the value formatter is added here),
  // decimals (of values other than %), width(box), height, axisSize, scales, plugins,
  // empty: [note, its CSS class] shown when the table has no rows.
  window.easChart = (parent, title, unit, table, opts) => {
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.title = title;
    // data-points: what the browser tests read to see that points were drawn
    box.dataset.points = String(table.slice(1).reduce((n, col) => n + col.filter((v) => !blank(v)).length, 0));
    const h = document.createElement("h3");
    h.textContent = title;
    box.appendChild(h);
    parent.appendChild(box);
    if (!table[0].length) {
      const p = document.createElement("p");
      p.className = opts.empty[1]; p.textContent = opts.empty[0];
      box.appendChild(p);
      return null;
    }
    const digits = unit === "%" ? 2 : opts.decimals;
    const value = (u, v) => (blank(v) ? "–" : `${(+v).toFixed(digits)} ${unit}`);
    return new uPlot({
      width: opts.width(box), height: opts.height,
      series: [{}].concat(opts.series.map((s) => ({ ...s, value }))),
      axes: [{}, { size: opts.axisSize, values: (u, vals) => vals.map((v) => `${v}${unit === "%" ? "%" : ""}`) }],
      scales: opts.scales,
      plugins: opts.plugins || [],
    }, table, box);
  };
})();
