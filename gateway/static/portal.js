// Customer portal: one customer's orders, live. Uses only what the public GraphQL API
// offers a customer token: no internal fields, customer-safe exception texts.
"use strict";

const ORDER_FIELDS = `
  id purchaseOrderByCustomer orderDate confirmedDeliveryDate predictedDeliveryDate deliveryRisk stage
  milestones { kind status planned expected actual }
  exceptions { kind severity customerDescription }
  logistics { eta shipments { carrier trackingNumber status estimatedDeliveryAt deliveredAt
    events { code tag occurredAt location description } } }`;
const ORDERS = `query PortalOrders($after: String) { orders(first: 40, after: $after) {
  pageInfo { hasNextPage endCursor } nodes { ${ORDER_FIELDS} } } }`;
const CHANGES = `subscription PortalChanges($after: String) { orderChanges(after: $after) {
  cursor eventType occurredAt order { ${ORDER_FIELDS} } } }`;

const { el, fmtDate, fmtTime, words } = ordergraph;
const main = document.getElementById("orders");
const statusEl = document.getElementById("status");
const cards = new Map();
let subscription = null;

function milestoneStep(m) {
  const when = m.actual || m.expected || m.planned;
  // A step the records say is done is "done", with its date when the records have one;
  // "planned" is only for what has not happened yet.
  const done = m.actual || m.status === "DONE";
  const label = done ? (m.actual ? "done " + fmtDate(m.actual) : "done")
    : m.expected ? "expected " + fmtDate(m.expected) : m.planned ? "planned " + fmtDate(m.planned) : "";
  return el("div", { class: "step " + m.status, title: `${words(m.kind)} — planned ${fmtTime(m.planned)}, expected ${fmtTime(m.expected)}, actual ${fmtTime(m.actual)}` },
    el("b", {}, words(m.kind)), when || done ? label : words(m.status));
}

function tracking(shipments) {
  if (!shipments || !shipments.length) return null;
  return shipments.map((s) => {
    const last = s.events && s.events.length ? s.events[s.events.length - 1] : null;
    return el("div", { class: "tracking" },
      `${s.carrier} ${s.trackingNumber}: ${words(s.status)}`,
      s.deliveredAt ? ` · delivered ${fmtTime(s.deliveredAt)}` : s.estimatedDeliveryAt ? ` · ETA ${fmtTime(s.estimatedDeliveryAt)}` : "",
      last ? el("span", { class: "muted" }, ` · last scan ${words(last.tag)} ${last.location || ""} ${fmtTime(last.occurredAt)}`) : null);
  });
}

function predicted(order) {
  // No predicted date while the order is held: say so rather than show a date.
  if (order.predictedDeliveryDate) return "predicted " + fmtDate(order.predictedDeliveryDate);
  const held = (order.milestones || []).some((m) => m.status === "ON_HOLD");
  return held ? "on hold, awaiting release" : "predicted —";
}

function uniqueTexts(exceptions) {
  const seen = new Set();
  return exceptions.filter((x) => !seen.has(x.customerDescription) && seen.add(x.customerDescription));
}

function render(order) {
  const card = el("section", { class: "card", "data-order": order.id },
    el("div", { class: "row" },
      el("span", { class: "title" }, "Order " + order.id),
      order.purchaseOrderByCustomer ? el("span", { class: "muted" }, "your PO " + order.purchaseOrderByCustomer) : null,
      el("span", { class: "badge stage", "data-stage": order.stage }, words(order.stage)),
      el("span", { class: "badge risk-" + order.deliveryRisk }, words(order.deliveryRisk)),
      el("span", { class: "muted" }, "promised " + fmtDate(order.confirmedDeliveryDate)),
      el("span", { class: "muted predicted" }, predicted(order))),
    el("div", { class: "timeline" }, (order.milestones || []).map(milestoneStep)),
    // customerDescription under Order.exceptions is this order's own text (with its new date).
    // Two findings can read the same to a customer (e.g. two holds): each text once.
    order.exceptions && order.exceptions.length
      ? el("ul", { class: "exceptions" }, uniqueTexts(order.exceptions).map((x) => el("li", { "data-kind": x.kind }, x.customerDescription)))
      : null,
    tracking(order.logistics && order.logistics.shipments));
  return card;
}

function upsert(order, flash) {
  const card = render(order);
  const old = cards.get(order.id);
  if (old) old.replaceWith(card);
  else main.append(card);
  cards.set(order.id, card);
  if (flash) card.classList.add("flash");
}

async function load() {
  main.replaceChildren(el("div", { class: "empty" }, "Loading…"));
  cards.clear();
  let after = null;
  const all = [];
  try {
    do {
      const body = await ordergraph.query(ORDERS, { after });
      const conn = body.data.orders;
      all.push(...conn.nodes);
      after = conn.pageInfo.hasNextPage ? conn.pageInfo.endCursor : null;
    } while (after);
  } catch (err) {
    main.replaceChildren(el("div", { class: "empty error" }, "Could not load your orders: " + err.message));
    statusEl.textContent = "error";
    return;
  }
  main.replaceChildren();
  if (!all.length) main.append(el("div", { class: "empty" }, "No orders yet."));
  all.forEach((o) => upsert(o, false));
  if (subscription) subscription.close();
  subscription = ordergraph.subscribe(CHANGES, {}, {
    onNext(payload) {
      const change = payload.data && payload.data.orderChanges;
      if (change && change.order) upsert(change.order, true);
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
