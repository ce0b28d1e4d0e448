// edgetwin dashboard: one Server-Sent Events stream (/dashboard/events) keeps every Device's
// twin on screen; writes go through the registry API with the ctl token. No polling, no build.
"use strict";

const API = "/apis/devices.kubeedge.io/v1beta1";
const TOKEN_KEY = "edgetwin-token";
const LAMPS = [["red"], ["yellow", "amber"], ["green"]];

const devices = new Map(); // "ns/name" -> device view
const models = new Map(); // "ns/name" -> model view
const cards = new Map(); // "ns/name" -> card element
let seenSinceOpen = new Set();
let token = null;

const $ = (selector, root = document) => root.querySelector(selector);
const key = (ns, name) => `${ns}/${name}`;

function message(text, kind = "info") {
  const el = $("#message");
  el.textContent = text;
  el.dataset.kind = kind;
}

// --- token -----------------------------------------------------------------------------------

function setAccess(newToken) {
  token = newToken;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  const access = $("#access");
  access.dataset.mode = token ? "control" : "read-only";
  access.textContent = token ? "control" : "read-only";
  document.body.dataset.control = token ? "true" : "false";
  for (const button of document.querySelectorAll("button[data-property], .write-col button")) {
    button.disabled = !token;
  }
}

async function checkToken(candidate) {
  const res = await fetch(`${API}/devices`, { headers: { Authorization: `Bearer ${candidate}` } });
  if (res.status === 401) throw new Error("the token was refused (see registry.token in the data directory)");
  if (!res.ok) throw new Error(`the registry answered ${res.status}`);
}

async function useToken(candidate) {
  try {
    await checkToken(candidate);
    setAccess(candidate);
    message("Control enabled: the buttons set desired values.");
  } catch (err) {
    setAccess(null);
    message(`Read-only: ${err.message}`, "error");
  }
}

function initToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    // Keep the token out of the address bar and the history once it is stored.
    history.replaceState(null, "", location.pathname + location.search);
  }
  setAccess(null);
  const candidate = fromHash || sessionStorage.getItem(TOKEN_KEY);
  if (candidate) useToken(candidate);
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    $("#token").value = "";
    if (value) useToken(value);
    else setAccess(null);
  });
}

// --- writes ----------------------------------------------------------------------------------

async function apiError(res) {
  try {
    const status = await res.json();
    return new Error(status.message || `HTTP ${res.status}`);
  } catch {
    return new Error(`HTTP ${res.status}`);
  }
}

// Sets one desired value the way `edgetwin ctl set` does: one PATCH of the Device's `desired`
// subresource, which changes that property under the registry's write lock.
async function setDesired(ns, name, property, value) {
  if (!token) throw new Error("read-only: give the ctl token first");
  const url = `${API}/namespaces/${encodeURIComponent(ns)}/devices/${encodeURIComponent(name)}/desired`;
  const res = await fetch(url, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ [property]: value }),
  });
  if (res.status === 401) setAccess(null);
  if (!res.ok) throw await apiError(res);
}

// The last desired value this page set, until the device's condition settles it.
let awaited = null;

async function set(ns, name, property, value) {
  try {
    await setDesired(ns, name, property, value);
    awaited = { key: key(ns, name), name, property, value };
    message(`${name}: desired ${property}=${value} sent; waiting for the device to report it…`);
  } catch (err) {
    message(`${name}: setting ${property}=${value} failed: ${err.message}`, "error");
  }
}

// --- rendering -------------------------------------------------------------------------------

function modelProperty(view, property) {
  const model = view.model && models.get(key(view.namespace, view.model));
  return model && model.properties.find((p) => p.name === property);
}

function onValue(view, property, on) {
  const type = (modelProperty(view, property) || {}).type;
  if (type === "BOOLEAN") return on ? "true" : "false";
  if (type === "INT") return on ? "1" : "0";
  return on ? "ON" : "OFF";
}

function isOn(value) {
  return value != null && ["on", "true", "1", "high"].includes(String(value).trim().toLowerCase());
}

function formatTime(text) {
  if (!text) return "—";
  const date = new Date(text);
  return isNaN(date) ? text : date.toLocaleString();
}

// The traffic light's lamps (red, yellow or amber, green), or null when the device is not one.
function lampsOf(view) {
  const names = new Set(view.properties.map((p) => p.name.toLowerCase()));
  const found = LAMPS.map((aliases) => view.properties.find((p) => aliases.includes(p.name.toLowerCase())));
  return found.every(Boolean) && names.size >= 3 ? found.map((p) => p.name) : null;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function buildTrafficLight(card, view, lamps) {
  const slot = $(".traffic-light-slot", card);
  slot.className = "traffic-light-slot traffic-light";
  const drawing = svg("svg", { viewBox: "0 0 90 230", role: "img", "aria-label": `${view.name}: lamps as reported` });
  drawing.append(svg("rect", { class: "housing", x: 5, y: 5, width: 80, height: 220, rx: 14 }));
  const colours = ["red", "yellow", "green"];
  lamps.forEach((property, i) => {
    drawing.append(svg("circle", {
      class: "lamp", cx: 45, cy: 45 + i * 70, r: 28,
      "data-lamp": colours[i], "data-property": property, "data-on": "false",
    }));
  });
  const buttons = document.createElement("div");
  buttons.className = "lamp-buttons";
  for (const property of lamps) {
    const label = document.createElement("span");
    label.textContent = property;
    buttons.append(label);
    for (const on of [true, false]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = on ? "ON" : "OFF";
      button.dataset.property = property;
      button.dataset.on = String(on);
      button.disabled = !token;
      button.addEventListener("click", () => {
        const current = devices.get(card.dataset.key);
        set(current.namespace, current.name, property, onValue(current, property, on));
      });
      buttons.append(button);
    }
  }
  const note = document.createElement("p");
  note.className = "traffic-light-note";
  note.textContent = "Lamps show the reported state; buttons set the desired state.";
  const controls = document.createElement("div");
  controls.append(buttons, note);
  slot.append(drawing, controls);
}

function updateTrafficLight(card, view) {
  for (const lamp of card.querySelectorAll("circle.lamp")) {
    const property = view.properties.find((p) => p.name === lamp.dataset.property);
    lamp.dataset.on = String(isOn(property && property.reported));
  }
  for (const button of card.querySelectorAll("button[data-property]")) {
    button.dataset.value = onValue(view, button.dataset.property, button.dataset.on === "true");
  }
}

function cell(row, className) {
  const td = document.createElement("td");
  td.className = className;
  row.append(td);
  return td;
}

function propertyRow(card, property) {
  const row = document.createElement("tr");
  row.dataset.property = property;
  cell(row, "name").textContent = property;
  cell(row, "value desired");
  cell(row, "value reported");
  cell(row, "condition-cell");
  cell(row, "since");
  const write = cell(row, "write-col");
  const form = document.createElement("form");
  const input = document.createElement("input");
  input.setAttribute("aria-label", `desired ${property}`);
  const button = document.createElement("button");
  button.textContent = "set";
  button.disabled = !token;
  form.append(input, button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const current = devices.get(card.dataset.key);
    if (input.value !== "") set(current.namespace, current.name, property, input.value);
  });
  write.append(form);
  return row;
}

function updateRow(row, property) {
  $(".desired", row).textContent = property.desired ?? "—";
  $(".reported", row).textContent = property.reported ?? "—";
  row.dataset.mismatch = String(property.desired != null && property.reported != null && property.desired !== property.reported);
  const conditionCell = $(".condition-cell", row);
  conditionCell.replaceChildren();
  const condition = property.condition;
  if (condition) {
    const badge = document.createElement("span");
    badge.className = "condition";
    badge.dataset.type = condition.type;
    badge.textContent = condition.type;
    conditionCell.append(badge);
    const why = [condition.reason, condition.message].filter(Boolean).join(": ");
    if (why) {
      const reason = document.createElement("span");
      reason.className = "condition-reason";
      reason.textContent = why;
      conditionCell.append(reason);
    }
  } else {
    conditionCell.textContent = "—";
  }
  $(".since", row).textContent = condition ? formatTime(condition.lastTransitionTime) : "—";
}

// Replaces the "waiting" message once the awaited property is Verified or Failed.
function settle(view) {
  if (!awaited || awaited.key !== key(view.namespace, view.name)) return;
  const property = view.properties.find((p) => p.name === awaited.property);
  const condition = property && property.desired === awaited.value ? property.condition : null;
  if (!condition) return;
  const { name, property: prop, value } = awaited;
  if (condition.type === "Verified") {
    message(`${name}: ${prop}=${value} verified (the device reports it)`);
    awaited = null;
  } else if (condition.type === "Failed") {
    message(`${name}: ${prop}=${value} failed: ${condition.message || condition.reason || "no reason given"}`, "error");
    awaited = null;
  }
}

function render(view) {
  settle(view);
  const k = key(view.namespace, view.name);
  let card = cards.get(k);
  if (!card) {
    card = $("#device-template").content.firstElementChild.cloneNode(true);
    card.dataset.key = k;
    card.dataset.namespace = view.namespace;
    card.dataset.name = view.name;
    cards.set(k, card);
    const main = $("#devices");
    $(".empty", main)?.remove();
    const after = [...cards.keys()].sort().find((other) => other > k);
    main.insertBefore(card, after ? cards.get(after) : null);
  }
  $(".device-name", card).textContent = view.name;
  $(".device-namespace", card).textContent = view.namespace;
  $(".fact-model", card).textContent = view.model ?? "—";
  $(".fact-node", card).textContent = view.node ?? "—";
  const state = $(".fact-state", card);
  state.textContent = view.state ?? "unknown";
  state.dataset.state = view.state ?? "unknown";
  $(".fact-update", card).textContent = formatTime(view.lastUpdate);

  const lamps = lampsOf(view);
  if (lamps && !$("svg", card)) buildTrafficLight(card, view, lamps);
  if (lamps) updateTrafficLight(card, view);

  const body = $("tbody", card);
  const rows = new Map([...body.rows].map((r) => [r.dataset.property, r]));
  const wanted = view.properties.map((p) => p.name);
  if (wanted.join("\u0000") !== [...rows.keys()].join("\u0000")) {
    body.replaceChildren(...wanted.map((name) => rows.get(name) || propertyRow(card, name)));
  }
  for (const property of view.properties) {
    updateRow([...body.rows].find((r) => r.dataset.property === property.name), property);
  }
}

function forget(k) {
  devices.delete(k);
  cards.get(k)?.remove();
  cards.delete(k);
}

// --- the event stream ------------------------------------------------------------------------

function connect() {
  const connection = $("#connection");
  const source = new EventSource("/dashboard/events");
  source.addEventListener("open", () => {
    connection.dataset.state = "live";
    connection.textContent = "live";
    seenSinceOpen = new Set();
  });
  source.addEventListener("error", () => {
    connection.dataset.state = "lost";
    connection.textContent = "connection lost; reconnecting…";
  });
  source.addEventListener("model", (event) => {
    const model = JSON.parse(event.data);
    models.set(key(model.namespace, model.name), model);
    for (const view of devices.values()) if (view.model === model.name) render(view);
  });
  source.addEventListener("modelDeleted", (event) => {
    const ref = JSON.parse(event.data);
    models.delete(key(ref.namespace, ref.name));
  });
  source.addEventListener("device", (event) => {
    const view = JSON.parse(event.data);
    const k = key(view.namespace, view.name);
    seenSinceOpen.add(k);
    devices.set(k, view);
    render(view);
  });
  source.addEventListener("deleted", (event) => {
    const ref = JSON.parse(event.data);
    forget(key(ref.namespace, ref.name));
  });
  source.addEventListener("synced", () => {
    // After a reconnect the stream lists everything again: drop what it no longer has.
    for (const k of [...devices.keys()]) if (!seenSinceOpen.has(k)) forget(k);
    document.body.dataset.synced = "true";
  });
}

initToken();
connect();
