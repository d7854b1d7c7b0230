// rankcast dashboard: reads /api/fleet every refresh_s seconds and draws it. Every value a device reported
// goes into the page as text (el() makes text nodes), never as markup.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's CSP
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function span(seconds) {
  seconds = Math.max(0, seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
    if (seconds >= size) return `${Math.round(seconds / size)} ${unit}`;
  }
  return `${Math.round(seconds)} s`;
}

function ago(readAt, then) {
  return then === null || then === undefined ? "–" : `${span(readAt - then)} ago`;
}

function bytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} kB` : `${n} B`;
}

function versions(map) {
  return Object.entries(map || {}).map(([model, version]) => `${model}=${version}`).join(", ") || "–";
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawConnection(view) {
  const pill = document.getElementById("connection");
  const connection = view.connection;
  pill.className = "pill " + (connection.connected ? "up" : "down");
  pill.textContent = connection.connected
    ? `broker ${view.broker}: connected`
    : `broker ${view.broker}: disconnected ${ago(view.read_at, connection.since)} (${connection.problem || "retrying"})`;
  document.getElementById("updated").textContent = `updated ${new Date(view.read_at * 1000).toLocaleTimeString()}`;
}

function drawTiles(view) {
  document.getElementById("devices-total").textContent = view.devices;
  document.getElementById("stale-count").textContent = view.stale.length;
  document.getElementById("error-count").textContent = Object.values(view.errors).reduce((a, b) => a + b, 0);
  document.getElementById("states").replaceChildren(...Object.entries(view.states).map(
    ([state, n]) => el("span", {class: "chip", "data-state": state}, `${state} `, el("b", {class: "count"}, n))));
}

function drawWave(model, readAt) {
  const wave = model.wave;
  const plan = wave.plan;
  const box = el("div", {class: "wave"});
  const where = wave.paused ? "paused" : `rollout ${wave.percent}%`;
  const step = plan ? ` · wave ${Math.min(plan.wave + 1, plan.percents.length)} of ${plan.percents.length}`
    + (plan.outcome !== "running" ? ` · ${plan.outcome}` : "") : "";
  box.append(el("h3", {}, "Current wave: ", el("span", {class: "wave-percent"}, where), step));
  if (plan) {
    box.append(el("div", {class: "chips"}, ...plan.percents.map((percent, i) => el("span", {
      class: "chip " + (plan.outcome === "halted" && i === plan.history.length - 1 ? "halted"
        : i < plan.history.length ? "done" : i === plan.wave && plan.outcome === "running" ? "now" : ""),
    }, `${percent}%`))));
  }
  const failed = Object.values(wave.failed).reduce((a, b) => a + b, 0);
  const total = Math.max(wave.cohort, 1);
  box.append(el("div", {class: "bar"},
    el("span", {class: "ok", style: {width: `${100 * wave.succeeded / total}%`}}),
    el("span", {class: "bad", style: {width: `${100 * failed / total}%`}}),
    el("span", {class: "wait", style: {width: `${100 * wave.pending / total}%`}})));
  box.append(el("div", {class: "legend"},
    el("span", {}, el("b", {class: "wave-cohort"}, wave.cohort), " in the cohort"),
    el("span", {}, el("b", {class: "wave-succeeded"}, wave.succeeded), ` run release ${model.latest.version}`),
    el("span", {class: failed ? "error" : ""}, el("b", {class: "wave-failed"}, failed), " failed",
      failed ? ` (${Object.entries(wave.failed).map(([code, n]) => `${code} ×${n}`).join(", ")})` : ""),
    el("span", {}, el("b", {class: "wave-pending"}, wave.pending), " pending"),
    plan && plan.wave_started && plan.outcome === "running"
      ? el("span", {class: "muted"}, `this wave went out ${ago(readAt, plan.wave_started)}`) : null));
  return box;
}

function drawVersions(model) {
  const counts = Object.entries(model.versions).sort((a, b) => Number(b[0]) - Number(a[0]));
  const most = Math.max(1, ...counts.map(([, n]) => n));
  const grid = el("div", {class: "versions"});
  for (const [version, n] of counts) {
    grid.append(el("span", {}, `version ${version}`),
      el("div", {}, el("div", {class: "fill", style: {width: `${100 * n / most}%`}})),
      el("b", {class: "count", "data-version": version}, n));
  }
  return el("div", {}, el("h3", {}, "Devices by version"), grid);
}

function drawHistory(model, readAt) {
  const rows = model.releases.map((release) => el("tr", {"data-version": release.version},
    el("td", {}, release.version), el("td", {}, release.kind + (release.base_version ? ` from ${release.base_version}` : "")),
    el("td", {}, `${new Date(release.created * 1000).toLocaleString()} (${ago(readAt, release.created)})`),
    el("td", {class: "num"}, bytes(release.payload_bytes)), el("td", {class: "num"}, release.chunks),
    el("td", {class: "num"}, release.rollout_percent === 0 ? "paused" : `${release.rollout_percent}%`),
    el("td", {class: "num running"}, release.running)));
  const head = el("tr", {}, ...["version", "kind", "signed", "payload", "chunks", "rollout", "devices on it"].map(
    (name, i) => el("th", {class: i > 2 ? "num" : ""}, name)));
  return el("div", {}, el("h3", {}, "Release history"),
    el("table", {class: "history"}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function drawModels(view) {
  document.getElementById("models").replaceChildren(...view.models.map((model) => el("section", {
    class: "panel model", "data-model": model.model,
  }, el("h2", {}, `Model ${model.model}: latest release ${model.latest.version} (${model.latest.kind}, `
      + `${bytes(model.latest.payload_bytes)})`),
  drawWave(model, view.read_at), drawVersions(model), drawHistory(model, view.read_at))));
}

function drawProblems(view) {
  fill(document.querySelector("#errors tbody"), Object.entries(view.errors).map(([code, n]) => el("tr", {
    "data-code": code}, el("td", {class: "error"}, code), el("td", {class: "num count"}, n))));
  fill(document.querySelector("#stale tbody"), view.stale.map((row) => el("tr", {"data-device": row.device},
    el("td", {}, row.device), el("td", {class: "stale"}, ago(view.read_at, row.last_seen)),
    el("td", {}, versions(row.versions)))));
}

function drawRows(view) {
  fill(document.querySelector("#rows tbody"), view.rows.map((row) => {
    const progress = row.progress ? ` ${row.progress.chunks_done ?? "?"}/${row.progress.chunks_total ?? "?"}` : "";
    const error = row.last_error;
    return el("tr", {"data-device": row.device},
      el("td", {}, row.device), el("td", {class: "state"}, row.state + progress), el("td", {}, versions(row.versions)),
      el("td", {class: row.stale ? "stale" : ""}, ago(view.read_at, row.sent) + (row.stale ? " STALE" : "")),
      el("td", {}, row.uptime_now === null ? "–" : span(row.uptime_now)), el("td", {}, row.runtime || "–"),
      el("td", {class: "error"}, error ? `[${error.code}] release ${error.release ?? "?"}: ${error.message}` : ""));
  }));
  document.getElementById("rows-note").textContent = view.rows_left_out
    ? `${view.rows.length} shown (problems first), ${view.rows_left_out} more not listed` : "";
}

async function refresh() {
  let wait = 2;
  try {
    const response = await fetch("/api/fleet", {cache: "no-store"});
    const view = await response.json();
    wait = view.refresh_s;
    drawConnection(view);
    drawTiles(view);
    drawModels(view);
    drawProblems(view);
    drawRows(view);
    document.body.dataset.readAt = view.read_at;
  } catch (error) {
    const pill = document.getElementById("connection");
    pill.className = "pill down";
    pill.textContent = `dashboard unreachable: ${error}`;
  }
  setTimeout(refresh, wait * 1000);
}

refresh();
