// The rollout view's charts: weights over time, error rate and p99 of both members against the
// analysis thresholds, each verdict / promotion / rollback as a vertical mark. Draws with the console's
// charts.js over the vendored uPlot.
(() => {
  "use strict";
  const section = document.getElementById("charts");
  if (!section || !window.easChart) return;
  const GREEN = "#16a34a", RED = "#dc2626", CANDIDATE = "#2563eb", STABLE = "#6b7280", LIMIT = "#f59e0b";

  function markersPlugin(markers) {
    return {
      hooks: {
        draw: (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          markers.forEach((m, i) => {
            const x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.strokeStyle = m.ok ? GREEN : RED;
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.setLineDash(m.kind === "shift" ? [4, 4] : []);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillStyle = m.ok ? GREEN : RED;
            // short tags, staggered: marks of a fast canary sit close together (the tables hold the full text)
            ctx.fillText(m.tag, x + 3, u.bbox.top + (11 + (i % 5) * 12) * devicePixelRatio);
          });
          ctx.restore();
        },
      },
    };
  }

  function chart(title, unit, table, series, data, yMax) {
    window.easChart(section, title, unit, table, {
      series: series.map((s) => ({ width: 2, spanGaps: true, points: { show: false }, ...s })),
      decimals: 0, width: () => Math.max(320, section.clientWidth - 20), height: 200, axisSize: 60,
      scales: { x: { time: true, range: () => [data.start - 5, data.end + 5] },
                y: { range: (u, min, max) => [0, Math.max(max, yMax || 1) * 1.1] } },
      plugins: [markersPlugin(data.markers)],
      empty: ["No points for this run.", "muted"],
    });
  }

  const pct = (v) => (v == null ? null : v * 100);

  function metricTable(data, key, scale, limit) {
    const tables = [];
    const labels = [];
    for (const role of ["stable", "candidate"]) {  // the candidate drawn last, on top
      const m = data.metrics[role];
      if (m && m.t.length) {
        tables.push([m.t, m[key].map((v) => (scale ? scale(v) : v))]);
        labels.push(role);
      }
    }
    if (!tables.length) return { table: [[]], labels };
    const joined = uPlot.join(tables);
    if (limit != null) {
      joined.push(joined[0].map(() => limit));
      labels.push("threshold");
    }
    return { table: joined, labels };
  }

  const styleOf = (label, data) => ({
    // dots too: a candidate that took traffic for a few seconds has a single 10-second point
    candidate: { label: `candidate ${data.candidate}`, stroke: CANDIDATE, points: { show: true, size: 6 } },
    stable: { label: `stable ${data.stable}`, stroke: STABLE, points: { show: true, size: 4 } },
    threshold: { label: "threshold", stroke: LIMIT, dash: [6, 4], width: 1.5 },
  })[label];

  async function load() {
    const r = await fetch(section.dataset.url, { credentials: "same-origin" });
    if (!r.ok) return;
    const data = await r.json();
    section.replaceChildren();
    const w = data.weights;
    const stepped = uPlot.paths.stepped({ align: 1 });
    const weightSeries = [{ label: `candidate ${data.candidate}`, stroke: CANDIDATE, paths: stepped, fill: "rgba(37,99,235,.12)" }];
    const weightTable = [w.t, w.candidate];
    if (data.stable) {
      weightSeries.push({ label: `stable ${data.stable}`, stroke: STABLE, paths: stepped });
      weightTable.push(w.stable);
    }
    chart("Traffic weight", "%", weightTable, weightSeries, data, 100);
    const limits = data.thresholds || {};
    const er = metricTable(data, "error_rate", pct, limits.max_error_rate != null ? limits.max_error_rate * 100 : null);
    chart("Error rate", "%", er.table, er.labels.map((l) => styleOf(l, data)), data, limits.max_error_rate * 100);
    const p99 = metricTable(data, "p99_ms", null, limits.max_p99_ms != null ? limits.max_p99_ms : null);
    chart("p99 latency", "ms", p99.table, p99.labels.map((l) => styleOf(l, data)), data, limits.max_p99_ms);
    section.dataset.loaded = "1";
    if (!["success", "failed"].includes(data.state)) setTimeout(load, 10000);
  }
  load();
})();
