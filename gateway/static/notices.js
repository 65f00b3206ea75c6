// Internal page: the notices the gateway decided, their deliveries, and the demo's mailbox.
"use strict";

const { el, words } = ordergraph;
const rows = document.getElementById("rows");
const statusEl = document.getElementById("status");
const statsEl = document.getElementById("stats");
const mailEl = document.getElementById("mail");
const tokenInput = document.getElementById("token");
let timer = null;

const time = (s) => (s ? new Date(s * 1000).toLocaleTimeString() : "");

async function refresh() {
  const headers = {};
  const token = sessionStorage.getItem("ordergraph-token");
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch("/notices/feed", { headers });
  if (!resp.ok) {
    statusEl.textContent = resp.status === 403 ? "an internal token is needed" : "HTTP " + resp.status;
    return;
  }
  const feed = await resp.json();
  statusEl.textContent = feed.enabled ? "live" : "notices are off";
  const s = feed.stats || {};
  statsEl.textContent = `events processed ${s.eventsProcessed || 0} · order evaluations ${s.ordersEvaluated || 0} · notice items decided ${s.itemsDecided || 0} · waiting ${s.waiting || 0} · sent ${s.sent || 0} · retrying ${s.retrying || 0} · dead ${s.dead || 0} · window ${feed.debounceSeconds || 0} s`;
  rows.replaceChildren(...(feed.notices.length ? feed.notices.map((n) => el("tr", {},
    el("td", {}, time(n.createdAt)),
    el("td", {}, n.customer),
    el("td", {}, n.subject),
    el("td", {}, n.items.map((i) => words(i.kind) + (i.predicted ? " → " + i.predicted : "") + (i.tracking && i.tracking.length ? " (" + i.tracking.map((t) => t.join(" ")).join(", ") + ")" : "")).join("; ")),
    el("td", {}, String(n.decisions)),
    el("td", {}, n.status + (n.status === "waiting" ? " until " + time(n.sendAt) : "")),
    el("td", {}, n.deliveries.map((d) => `${d.channel} ${d.target}: ${d.status}${d.attempts > 1 ? " after " + d.attempts + " tries" : ""}${d.lastError && d.status !== "sent" ? " (" + d.lastError + ")" : ""}`).join("; ") || "—")))
    : [el("tr", {}, el("td", { colspan: "7", class: "empty" }, "No notices yet: they come when an order's promise, shipment or delivery changes."))]));
  mailEl.replaceChildren(...(feed.mail.length ? feed.mail.slice(0, 50).map((m) => el("details", { class: "mail" },
    el("summary", {}, `${time(m.receivedAt)} to ${m.to.join(", ")}: ${m.subject} [${m.language}]`),
    el("pre", {}, m.text))) : [el("div", { class: "empty" }, "No mail yet.")]));
}

function start() {
  if (timer) clearInterval(timer);
  refresh().catch((e) => (statusEl.textContent = String(e)));
  timer = setInterval(() => refresh().catch((e) => (statusEl.textContent = String(e))), 3000);
}

document.getElementById("signin").onclick = () => {
  sessionStorage.setItem("ordergraph-token", tokenInput.value.replace(/^Bearer\s+/i, "").trim());
  start();
};
tokenInput.value = sessionStorage.getItem("ordergraph-token") || "";
start();
