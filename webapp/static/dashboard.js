/*
 * Dashboard: GET /v1/analytics/summary for the chosen time range, drawn as inline SVG bars.
 *
 * Acceptance (accepted ÷ displayed) by knowledge source, skill and article, suggestion volume
 * over time, latency per stage (p50/p95 from the trigger) and the most dismissed articles.
 * Every chart shows its numbers too. No dependencies; all data goes in through textContent.
 */
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("assist-config").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (selector) => document.querySelector(selector);
  const form = $("[data-testid=range-form]");
  const status = $("[data-testid=dashboard-status]");

  const url = new URL(window.location.href);
  if (url.searchParams.has("access_token")) {
    url.searchParams.delete("access_token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  // --- small helpers -------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const pct = (rate) => (rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + "%");
  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms");
  const count = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString());

  /** A horizontal bar (0..max) as a small SVG; `alt` draws a second, lighter bar under it. */
  function bar(value, max, cls, alt) {
    const svg = svgEl("svg", { viewBox: "0 0 200 14", preserveAspectRatio: "none", role: "presentation" });
    svg.append(svgEl("rect", { class: "track", x: 0, y: 0, width: 200, height: 14, rx: 2 }));
    const scale = (v) => (max > 0 && v ? Math.max(1, (200 * v) / max) : 0);
    if (alt !== undefined) svg.append(svgEl("rect", { class: "bar alt", x: 0, y: 0, width: scale(alt), height: 14, rx: 2 }));
    svg.append(svgEl("rect", { class: "bar " + (cls || ""), x: 0, y: alt === undefined ? 0 : 3, width: scale(value), height: alt === undefined ? 14 : 8, rx: 2 }));
    return svg;
  }

  /** A table whose rows carry a bar chart column: label | bar | numbers... */
  function barTable(container, rows, columns, chart) {
    container.replaceChildren();
    if (!rows.length) {
      container.append(el("p", { class: "none" }, "No data in this time range."));
      return;
    }
    const table = el("table", { class: "bar-table" });
    const head = el("tr");
    head.append(el("th", { scope: "col" }, chart.heading), el("th", { scope: "col" }, ""));
    for (const c of columns) head.append(el("th", { scope: "col", class: "num" }, c.heading));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    for (const row of rows) {
      const tr = el("tr", { "data-key": row.key || row.stage || "" });
      tr.append(el("td", { class: "label", title: row.label }, row.label));
      const cell = el("td", { class: "bar" });
      cell.append(chart.draw(row));
      tr.append(cell);
      for (const c of columns) tr.append(el("td", { class: "num " + c.cls }, c.value(row)));
      table.tBodies[0].append(tr);
    }
    container.append(table);
  }

  function acceptance(container, rows) {
    barTable(container, rows, [
      { heading: "Rate", cls: "rate", value: (r) => pct(r.rate) },
      { heading: "Accepted", cls: "accepted", value: (r) => count(r.accepted) },
      { heading: "Displayed", cls: "displayed", value: (r) => count(r.displayed) },
    ], { heading: "Name", draw: (r) => bar(r.rate || 0, 1) });
  }

  function latency(container, stages) {
    const max = Math.max(0, ...stages.map((s) => s.p95_ms || s.p50_ms || 0));
    barTable(container, stages, [
      { heading: "p50", cls: "p50", value: (s) => ms(s.p50_ms) },
      { heading: "p95", cls: "p95", value: (s) => ms(s.p95_ms) },
      { heading: "n", cls: "count", value: (s) => count(s.count) },
    ], { heading: "Stage", draw: (s) => bar(s.p50_ms || 0, max, "", s.p95_ms || 0) });
  }

  function copilot(container, note, figures) {
    const rows = figures.by_type.map((r) => ({ ...r, key: r.insight_type, label: r.insight_type }));
    const max = Math.max(0, ...rows.map((r) => r.p95_ms || r.p50_ms || 0));
    barTable(container, rows, [
      { heading: "p50", cls: "p50", value: (r) => ms(r.p50_ms) },
      { heading: "p95", cls: "p95", value: (r) => ms(r.p95_ms) },
      { heading: "<500 ms", cls: "rate", value: (r) => pct(r.under_500ms) },
      { heading: "n", cls: "count", value: (r) => count(r.count) },
    ], { heading: "Insight type", draw: (r) => bar(r.p50_ms || 0, max, "", r.p95_ms || 0) });
    const c = figures.counters;
    const filtered = c["insights.filtered"] || 0;
    const dropped = Object.entries(c).filter(([k]) => k.startsWith("dropped.insight_"))
      .reduce((sum, [, v]) => sum + v, 0);
    note.textContent = `Filtered out: ${count(filtered)} · rejected: ${count(dropped)} · ` +
      `duplicates: ${count(c["insights.duplicate"] || 0)} · training sync failed attempts: ` +
      `${count(c["sync.failed"] || 0)}, dead-lettered: ${count(c["sync.dead_lettered"] || 0)}`;
  }

  function dismissed(container, rows) {
    const max = Math.max(0, ...rows.map((r) => r.dismissed));
    barTable(container, rows, [
      { heading: "Dismissed", cls: "dismissed", value: (r) => count(r.dismissed) },
      { heading: "Displayed", cls: "displayed", value: (r) => count(r.displayed) },
      { heading: "Rate", cls: "rate", value: (r) => pct(r.rate) },
    ], { heading: "Article", draw: (r) => bar(r.dismissed, max, "bad") });
  }

  /** Columns per time bucket (requests, and feedback beside it), with the numbers below. */
  function volume(container, data) {
    container.replaceChildren();
    const buckets = data.buckets || [];
    if (!buckets.length) {
      container.append(el("p", { class: "none" }, "No data in this time range."));
      return;
    }
    const W = 720, H = 170, left = 36, bottom = 22, top = 8;
    const max = Math.max(1, ...buckets.map((b) => Math.max(b.requests, b.feedback)));
    const step = (W - left) / buckets.length;
    const colW = Math.max(1, Math.min(18, step * 0.4));
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Requests and feedback per time bucket" });
    svg.append(svgEl("line", { class: "axis", x1: left, x2: W, y1: y(0), y2: y(0) }));
    svg.append(svgEl("text", { x: left - 6, y: y(max) + 4, "text-anchor": "end" }, count(max)));
    svg.append(svgEl("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"));
    const spanH = (Date.parse(buckets[buckets.length - 1].start) - Date.parse(buckets[0].start)) / 3.6e6;
    const fmt = (iso) => {
      const d = new Date(iso);
      return spanH > 36 ? d.toLocaleDateString([], { month: "short", day: "numeric" })
        : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    };
    const labelEvery = Math.max(1, Math.ceil(buckets.length / 8));
    buckets.forEach((b, i) => {
      const x = left + i * step + step / 2;
      const g = svgEl("g", { "data-start": b.start });
      g.append(svgEl("title", {}, `${fmt(b.start)}: ${b.requests} requests, ${b.ranked} ranked, ` +
        `${b.suggestions_delivered} suggestions delivered, ${b.feedback} feedback`));
      g.append(svgEl("rect", { class: "bar", x: x - colW, y: y(b.requests), width: colW, height: y(0) - y(b.requests) }));
      g.append(svgEl("rect", { class: "bar alt", x: x, y: y(b.feedback), width: colW, height: y(0) - y(b.feedback) }));
      if (i % labelEvery === 0) g.append(svgEl("text", { x: x, y: H - 6, "text-anchor": "middle" }, fmt(b.start)));
      svg.append(g);
    });
    container.append(svg);
    const details = el("details");
    details.append(el("summary", {}, `Numbers (${buckets.length} buckets of ${Math.round(data.bucket_s / 60)} min)`));
    const table = el("table");
    const head = el("tr");
    for (const h of ["Start", "Requests", "Ranked", "Suggestions delivered", "Feedback"]) head.append(el("th", { class: h === "Start" ? "" : "num" }, h));
    table.append(head);
    for (const b of buckets) {
      const tr = el("tr");
      tr.append(el("td", {}, new Date(b.start).toLocaleString()));
      for (const v of [b.requests, b.ranked, b.suggestions_delivered, b.feedback]) tr.append(el("td", { class: "num" }, count(v)));
      table.append(tr);
    }
    details.append(table);
    container.append(details);
  }

  function totals(t) {
    const rate = $("[data-testid=total-acceptance-rate]");
    rate.textContent = pct(t.acceptance_rate);
    rate.dataset.value = t.acceptance_rate === null ? "" : String(t.acceptance_rate);
    for (const name of ["requests", "displayed", "accepted", "dismissed"]) {
      const node = $(`[data-testid=total-${name}]`);
      node.textContent = count(t[name]);
      node.dataset.value = String(t[name]);
    }
  }

  // --- time range and loading ----------------------------------------------------------------
  function range() {
    const choice = form.elements.range.value;
    if (choice === "custom") {
      const from = form.elements.from.value, to = form.elements.to.value;
      if (!from || !to) return null;
      return { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
    }
    const now = Date.now();
    return { from: new Date(now - Number(choice) * 3.6e6).toISOString(), to: new Date(now).toISOString() };
  }

  async function load() {
    const r = range();
    if (!r) {
      status.textContent = "Choose both ends of the custom range.";
      return;
    }
    document.body.dataset.state = "loading";
    status.classList.remove("error");
    status.textContent = "Loading…";
    try {
      const response = await fetch("/v1/analytics/summary?" + new URLSearchParams(r), {
        headers: { Authorization: "Bearer " + config.token },
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new Error((data && data.error && data.error.message) || "HTTP " + response.status);
      totals(data.totals);
      acceptance($("[data-testid=acceptance-by_knowledge_source]"), data.acceptance.by_knowledge_source);
      acceptance($("[data-testid=acceptance-by_skill]"), data.acceptance.by_skill);
      acceptance($("[data-testid=acceptance-by_article]"), data.acceptance.by_article);
      volume($("[data-testid=volume]"), data.volume);
      latency($("[data-testid=latency]"), data.latency.stages);
      dismissed($("[data-testid=dismissed]"), data.dismissed.rows);
      copilot($("[data-testid=copilot]"), $("[data-testid=copilot-counters]"), data.copilot);
      status.textContent = `${new Date(data.from).toLocaleString()} – ${new Date(data.to).toLocaleString()}`;
      document.body.dataset.state = "ready";
    } catch (err) {
      status.classList.add("error");
      status.textContent = "Could not load the figures: " + err.message;
      document.body.dataset.state = "error";
    }
  }

  form.elements.range.addEventListener("change", () => {
    const custom = form.elements.range.value === "custom";
    form.querySelector(".custom").hidden = !custom;
    if (custom && !form.elements.from.value) {
      // Start from the last 24 hours, in the local time the inputs show.
      const local = (t) => new Date(t - new Date(t).getTimezoneOffset() * 6e4).toISOString().slice(0, 16);
      form.elements.from.value = local(Date.now() - 24 * 3.6e6);
      form.elements.to.value = local(Date.now());
    }
    if (!custom) load();
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  load();
})();
