// Exceptions board for internal viewers: open exceptions live, by severity and value at
// risk; a click lists the affected orders and their promises.
"use strict";

const FIELDS = `id kind severity description detectedAt daysLate affectedOrderCount open
  valueAtRisk { amount currency } rootCause { system entity key label }`;
const OPEN = `query BoardOpen { exceptions(filter: { openOnly: true }, first: 500) {
  transitionCursor totalCount totalValueAtRisk { amount currency } nodes { ${FIELDS} } } }`;
const CHANGES = `subscription BoardChanges($after: String) { exceptionsChanged(after: $after) {
  cursor action exception { ${FIELDS} } } }`;
const DETAIL = `query BoardDetail($id: ID!) { exception(id: $id) { id kind description
  affected { orderId customerId commercialPriority severity daysLate valueAtRisk { amount currency }
    order { confirmedDeliveryDate predictedDeliveryDate deliveryRisk stage customer { name } } } } }`;

const { el, fmtDate, fmtTime, words } = ordergraph;
const rows = document.getElementById("rows");
const statusEl = document.getElementById("status");
const totalsEl = document.getElementById("totals");
const detail = document.getElementById("detail");
const SEVERITY = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 };
const open = new Map();
let subscription = null;
let selected = null;

function money(m) {
  if (!m) return "—";
  return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currency || "EUR", maximumFractionDigits: 0 }).format(m.amount);
}

function renderRows() {
  const list = [...open.values()].sort((a, b) =>
    (SEVERITY[b.severity] - SEVERITY[a.severity]) || (b.valueAtRisk.amount - a.valueAtRisk.amount));
  rows.replaceChildren(...(list.length ? list.map((x) =>
    el("tr", { class: "exception" + (x.id === selected ? " selected" : ""), "data-id": x.id, "data-kind": x.kind, onclick: () => showDetail(x.id) },
      el("td", {}, el("span", { class: "badge sev-" + x.severity }, x.severity)),
      el("td", {}, words(x.kind)),
      el("td", {}, `${x.rootCause.system.toUpperCase()} ${x.rootCause.label || x.rootCause.key}`),
      el("td", {}, x.description),
      el("td", {}, x.affectedOrderCount),
      el("td", {}, x.daysLate),
      el("td", {}, money(x.valueAtRisk)),
      el("td", {}, fmtTime(x.detectedAt))))
    : [el("tr", {}, el("td", { colspan: "8", class: "empty" }, "No open exceptions."))]));
  const total = list.reduce((s, x) => s + x.valueAtRisk.amount, 0);
  totalsEl.textContent = `${list.length} open · ${money({ amount: total, currency: list[0] ? list[0].valueAtRisk.currency : "EUR" })} at risk`;
}

async function showDetail(id, scroll = true) {
  selected = id;
  renderRows();
  detail.hidden = false;
  if (scroll) detail.replaceChildren(el("div", { class: "muted" }, "Loading…"));
  try {
    const body = await ordergraph.query(DETAIL, { id });
    const x = body.data.exception;
    if (!x) { detail.replaceChildren(el("div", { class: "muted" }, "This exception is no longer known.")); return; }
    detail.replaceChildren(
      el("div", { class: "row" }, el("span", { class: "title" }, words(x.kind)), el("span", { class: "muted" }, x.description),
        el("button", { class: "close", onclick: closeDetail }, "Close")),
      el("table", { id: "affected" },
        el("thead", {}, el("tr", {}, ["Order", "Customer", "Priority", "Severity", "Promised", "Predicted", "Days late", "Value at risk", "Stage"].map((h) => el("th", {}, h)))),
        el("tbody", {}, x.affected.map((a) => el("tr", { "data-order": a.orderId },
          el("td", {}, a.orderId),
          el("td", {}, a.order && a.order.customer ? a.order.customer.name : a.customerId),
          el("td", {}, words(a.commercialPriority)),
          el("td", {}, el("span", { class: "badge sev-" + a.severity }, a.severity)),
          el("td", {}, fmtDate(a.order && a.order.confirmedDeliveryDate)),
          el("td", {}, fmtDate(a.order && a.order.predictedDeliveryDate)),
          el("td", {}, a.daysLate),
          el("td", {}, money(a.valueAtRisk)),
          el("td", {}, a.order ? words(a.order.stage) : "—"))))));
  } catch (err) {
    detail.replaceChildren(el("div", { class: "error" }, err.message));
  }
  // The detail sits above the list: bring it into view, wherever the clicked row was.
  if (scroll) detail.scrollIntoView({ block: "start" });
}

function closeDetail() {
  selected = null;
  detail.hidden = true;
  renderRows();
}

async function load() {
  rows.replaceChildren(el("tr", {}, el("td", { colspan: "8", class: "empty" }, "Loading…")));
  let body;
  try {
    body = await ordergraph.query(OPEN, {});
  } catch (err) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: "8", class: "empty error" }, "Could not load exceptions: " + err.message)));
    statusEl.textContent = "error";
    return;
  }
  open.clear();
  for (const x of body.data.exceptions.nodes) open.set(x.id, x);
  renderRows();
  if (subscription) subscription.close();
  subscription = ordergraph.subscribe(CHANGES, { after: body.data.exceptions.transitionCursor }, {
    onNext(payload) {
      const t = payload.data && payload.data.exceptionsChanged;
      if (!t) return;
      if (t.action === "CLEARED" || !t.exception.open) open.delete(t.exception.id);
      else open.set(t.exception.id, t.exception);
      renderRows();
      if (selected === t.exception.id) showDetail(selected, false);  // refresh in place
    },
    onError(message) { statusEl.textContent = "error: " + message; },
    onStatus(s) { statusEl.textContent = s; },
  });
}

document.getElementById("signin").addEventListener("click", () => {
  ordergraph.setToken(document.getElementById("token").value);
  load();
  startClock();
});
let clock = null;
function startClock() {
  if (clock === null) clock = ordergraph.plantClock(document.getElementById("clock"), 10);
}
if (ordergraph.token()) {
  document.getElementById("token").value = ordergraph.token();
  load();
  startClock();
}
