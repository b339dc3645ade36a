// The console's script: live fragments, confirmations, token reveal, log follow, charts (with charts.js).
// Served from 'self' (the page's CSP allows no inline script); talks to the same origin only.
(() => {
  "use strict";
  const base = "/console";
  const POLL_MS = 2000, CHART_MS = 10000;

  function toLogin() {
    location.href = `${base}/login?next=${encodeURIComponent(location.pathname)}`;
  }

  async function get(url, json) {
    const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { toLogin(); throw new Error("signed out"); }
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return json ? r.json() : r.text();
  }

  // live fragments: server-rendered (escaped) HTML swapped in every 2 s
  for (const el of document.querySelectorAll("[data-poll]")) {
    const tick = async () => {
      try { el.innerHTML = await get(el.dataset.poll); } catch (e) { /* keep the last view */ }
      setTimeout(tick, POLL_MS);
    };
    setTimeout(tick, POLL_MS);
  }

  // every destructive or state-changing button may ask first
  document.addEventListener("submit", (e) => {
    const msg = e.submitter && e.submitter.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // token: fetched only when asked for
  const reveal = document.getElementById("reveal");
  if (reveal) {
    reveal.addEventListener("click", async () => {
      const tokenEl = document.getElementById("token");
      if (reveal.dataset.shown) {
        tokenEl.textContent = "••••••••••••";
        for (const s of document.querySelectorAll(".token-slot")) s.textContent = "$EAS_TOKEN";
        delete reveal.dataset.shown; reveal.textContent = "Reveal";
        return;
      }
      const { token } = await get(tokenEl.dataset.tokenUrl, true);
      tokenEl.textContent = token;
      for (const s of document.querySelectorAll(".token-slot")) s.textContent = token;
      reveal.dataset.shown = "1"; reveal.textContent = "Hide";
    });
  }

  // an instance's log, followed
  let logTimer = null;
  document.addEventListener("click", (e) => {
    const btn = e.target.closest("[data-log-instance]");
    if (!btn) return;
    const id = btn.dataset.logInstance;
    const box = document.getElementById("logs"), text = document.getElementById("log-text");
    box.hidden = false;
    document.getElementById("log-instance").textContent = id;
    clearTimeout(logTimer);
    const follow = async () => {
      try {
        text.textContent = await get(`${text.dataset.logUrl}?instance=${encodeURIComponent(id)}&lines=200`);
        if (document.getElementById("log-follow").checked) text.scrollTop = text.scrollHeight;
      } catch (err) { text.textContent = String(err); }
      logTimer = setTimeout(follow, POLL_MS);
    };
    follow();
    box.scrollIntoView({ block: "nearest" });
  });

  // traffic sliders mirror their number inputs
  for (const range of document.querySelectorAll("input[data-mirror]")) {
    const num = document.getElementById(range.dataset.mirror);
    range.addEventListener("input", () => { num.value = range.value; });
    num.addEventListener("input", () => { range.value = num.value; });
  }

  // deploy: show the inputs of the chosen kind; a chosen file fills the JSON box
  const kinds = document.querySelectorAll("input[name=kind]");
  const showKind = () => {
    const on = document.querySelector("input[name=kind]:checked");
    for (const div of document.querySelectorAll("[data-kind]")) div.hidden = !on || div.dataset.kind !== on.value;
  };
  for (const k of kinds) k.addEventListener("change", showKind);
  if (kinds.length) showKind();
  const file = document.getElementById("j-file");
  if (file) {
    file.addEventListener("change", async () => {
      if (file.files.length) document.getElementById("j-spec").value = await file.files[0].text();
    });
  }

  // charts (uPlot, vendored)
  const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d"];

  // console charts: one colour per series, gaps left open, y from 0 (easChart: static/charts.js)
  function chart(grid, title, unit, table, names) {
    window.easChart(grid, title, unit, table, {
      series: names.map((name, i) => ({ label: name, stroke: palette[i % palette.length], width: 1.5, spanGaps: false })),
      decimals: 1, width: (box) => Math.max(280, box.clientWidth - 8), height: 180, axisSize: 56,
      scales: { y: { range: (u, min, max) => [0, Math.max(max, 1)] } },
      empty: ["No data yet.", "muted small"],
    });
  }

  const col = (s, key, scale) => s.points[key].map((v) => (v === null ? null : v * (scale || 1)));

  function drawService(grid, s) {
    const t = s.points.t;
    chart(grid, "Requests/s", "req/s", [t, col(s, "rps")], ["requests/s"]);
    chart(grid, "Error rate", "%", [t, col(s, "error_rate", 100)], ["error rate"]);
    chart(grid, "Latency", "ms", [t, col(s, "p50_ms"), col(s, "p95_ms"), col(s, "p99_ms")], ["p50", "p95", "p99"]);
    const ids = Object.keys(s.instances);
    const join = (key) => ids.length ? uPlot.join(ids.map((id) => [s.instances[id].t, s.instances[id][key]])) : [[]];
    chart(grid, "CPU per instance", "%", join("cpu_percent"), ids);
    chart(grid, "Memory per instance", "MB", join("memory_mb"), ids);
  }

  function drawGroup(grid, g) {
    const names = Object.keys(g.members);
    const join = (key, scale) => uPlot.join([[g.group.points.t, col(g.group, key, scale)]].concat(
      names.map((n) => [g.members[n].points.t, col(g.members[n], key, scale)])));
    const labels = ["group"].concat(names);
    chart(grid, "Requests/s", "req/s", join("rps"), labels);
    chart(grid, "Error rate", "%", join("error_rate", 100), labels);
    chart(grid, "p99 latency", "ms", join("p99_ms"), labels);
  }

  for (const section of document.querySelectorAll("[data-series]")) {
    const grid = section.querySelector(".chart-grid");
    let window_ = "15m", timer = null;
    const load = async () => {
      clearTimeout(timer);
      try {
        const data = await get(`${section.dataset.series}?window=${window_}`, true);
        grid.replaceChildren();
        (section.dataset.kinds === "group" ? drawGroup : drawService)(grid, data);
        section.dataset.loaded = window_;
      } catch (e) { /* next round */ }
      timer = setTimeout(load, CHART_MS);
    };
    for (const b of section.querySelectorAll("[data-window]")) {
      b.addEventListener("click", () => {
        for (const o of section.querySelectorAll("[data-window]")) o.classList.toggle("on", o === b);
        window_ = b.dataset.window;
        load();
      });
    }
    if (window.easChart) load(); else window.addEventListener("load", load);
  }
})();
