// The greenroom monitor page: polls the JSON API next to it (api/...), renders with
// textContent only (room metadata, names and state are other people's input).
"use strict";

const REFRESH_MS = 1000;
const $ = (selector) => document.querySelector(selector);
let selected = null;      // roomId shown in the detail panel
let serverSkew = 0;       // server clock minus ours, in seconds, for the ages

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.body !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(init.body);
  }
  const response = await fetch("api/" + path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function flag(row, value) {
  const td = cell(row, value ? "yes" : "no");
  if (value) td.className = "yes";
}

function age(createdAt) {
  const seconds = Math.max(0, Date.now() / 1000 + serverSkew - createdAt);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(seconds / 3600);
  return `${hours} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (className) b.className = className;
  b.addEventListener("click", (event) => { event.stopPropagation(); onClick(); });
  return b;
}

function notice(text, isError) {
  const element = $("#notice");
  element.textContent = text;
  element.classList.toggle("error", Boolean(isError));
}

async function act(what, path, body) {
  try {
    await api(path, { body: body || {} });
    notice(what);
  } catch (e) {
    notice(`${what}: failed: ${e.message}`, true);
  }
  refresh();
}

function dispose(room) {
  if (!confirm(`Dispose room ${room.roomId} (${room.name})? Its clients are disconnected.`)) return;
  act(`room ${room.roomId} disposed`, `rooms/${encodeURIComponent(room.roomId)}/dispose`);
}

function kick(roomId, sessionId) {
  if (!confirm(`Disconnect client ${sessionId}?`)) return;
  act(`client ${sessionId} kicked`,
      `rooms/${encodeURIComponent(roomId)}/clients/${encodeURIComponent(sessionId)}/kick`);
}

function renderRooms(data) {
  const tbody = $("#rooms tbody");
  const processes = new Map(data.processes.map((p) => [p.processId, p]));
  tbody.replaceChildren();
  let clients = 0;
  for (const room of data.rooms) {
    clients += room.clients;
    const row = tbody.insertRow();
    row.dataset.roomId = room.roomId;
    if (room.roomId === selected) row.className = "selected";
    cell(row, room.name);
    cell(row, room.roomId, "id");
    const owner = processes.get(room.processId);
    const processCell = cell(row, room.processId, "id");
    if (owner && owner.host) processCell.title = `${owner.host} pid ${owner.pid}`;
    cell(row, room.maxClients == null ? `${room.clients}` : `${room.clients} / ${room.maxClients}`);
    flag(row, room.locked);
    flag(row, room.private);
    const meta = JSON.stringify(room.metadata || {});
    cell(row, meta === "{}" ? "" : meta, "meta").title = meta;
    cell(row, age(room.createdAt));
    row.insertCell().appendChild(button("dispose", "danger dispose", () => dispose(room)));
    row.addEventListener("click", () => select(room.roomId));
  }
  $("#empty").hidden = data.rooms.length > 0;
  $("#summary").textContent =
    `${data.rooms.length} room${data.rooms.length === 1 ? "" : "s"}, ${clients} client${clients === 1 ? "" : "s"}, ` +
    `${data.processes.length} process${data.processes.length === 1 ? "" : "es"}`;
  if (selected && !data.rooms.some((r) => r.roomId === selected)) showDetail(null);
}

function renderDetail(room) {
  $("#d-id").textContent = room.roomId;
  const info = $("#d-info");
  info.replaceChildren();
  const fields = [
    ["name", room.name], ["process", room.processId],
    ["clients", room.maxClients == null ? `${room.clients.length}` : `${room.clients.length} / ${room.maxClients}`],
    ["seats taken", room.seats], ["locked", room.locked ? "yes" : "no"],
    ["private", room.private ? "yes" : "no"], ["metadata", JSON.stringify(room.metadata)],
    ["age", room.createdAt ? age(room.createdAt) : "?"], ["state type", room.stateType || "none"],
  ];
  for (const [name, value] of fields) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    info.append(dt, dd);
  }
  const tbody = $("#d-clients tbody");
  tbody.replaceChildren();
  const select = $("#d-send select");
  const chosen = select.value;
  select.replaceChildren(new Option("everyone", ""));
  for (const client of room.clients) {
    const row = tbody.insertRow();
    row.dataset.sessionId = client.sessionId;
    cell(row, client.sessionId, "id");
    cell(row, client.state);
    cell(row, client.ip || "");
    cell(row, client.dialect);
    cell(row, JSON.stringify(client.auth), "meta");
    row.insertCell().appendChild(button("kick", "danger kick", () => kick(room.roomId, client.sessionId)));
    select.add(new Option(client.sessionId, client.sessionId));
  }
  select.value = room.clients.some((c) => c.sessionId === chosen) ? chosen : "";
  $("#d-state").textContent = room.state == null ? "(no state)" : JSON.stringify(room.state, null, 2);
}

function showDetail(roomId) {
  selected = roomId;
  $("#detail").hidden = roomId === null;
  for (const row of document.querySelectorAll("#rooms tbody tr")) {
    row.classList.toggle("selected", row.dataset.roomId === roomId);
  }
}

function select(roomId) {
  showDetail(roomId);
  $("#d-state").textContent = "loading…";
  refresh();
}

// One refresh at a time: a click or a keystroke during one asks for another right after it,
// so the polling never doubles up however often the operator clicks.
let timer = null;
let refreshing = false;
let again = false;
async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  clearTimeout(timer);
  try {
    const name = $("#filter").value.trim();
    const data = await api("rooms" + (name ? `?name=${encodeURIComponent(name)}` : ""));
    serverSkew = data.time - Date.now() / 1000;
    renderRooms(data);
    if (selected) {
      try {
        renderDetail(await api(`rooms/${encodeURIComponent(selected)}`));
      } catch (e) {
        $("#d-state").textContent = `cannot read room ${selected}: ${e.message}`;
      }
    }
    setStatus(`process ${data.processId} · updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setStatus(`cannot list rooms: ${e.message}`, true);
  } finally {
    refreshing = false;
  }
  timer = setTimeout(refresh, again ? 0 : REFRESH_MS);
  again = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#d-close").addEventListener("click", () => showDetail(null));
  $("#d-dispose").addEventListener("click", () => selected && dispose({ roomId: selected, name: $("#d-info dd").textContent }));
  $("#filter").addEventListener("input", () => refresh());
  $("#d-send").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    let message;
    try {
      message = form.message.value.trim() === "" ? null : JSON.parse(form.message.value);
    } catch (e) {
      $("#d-sent").textContent = "the message is not valid JSON";
      return;
    }
    const body = { type: form.type.value, message };
    if (form.sessionId.value) body.sessionId = form.sessionId.value;
    api(`rooms/${encodeURIComponent(selected)}/message`, { body })
      .then((r) => { $("#d-sent").textContent = `sent to ${r.clients} client${r.clients === 1 ? "" : "s"}`; })
      .catch((e) => { $("#d-sent").textContent = `not sent: ${e.message}`; });
  });
  refresh();
});
