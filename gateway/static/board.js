// Exceptions board for internal viewers: open exceptions live, by severity and value at
// risk, with who owns each, whether it is acknowledged and how old it is. Tabs filter by
// workflow (active, mine, unassigned, snoozed, resolved); a click opens the affected orders,
// the audit trail and the actions (acknowledge, assign, comment, snooze, resolve, reopen).
"use strict";

const WORKFLOW = `workflow { status acknowledged acknowledgedBy acknowledgedAt assignee { kind name }
  snoozed snoozedUntil resolved resolvedBy resolution commentCount }`;
const FIELDS = `id kind severity description detectedAt ageSeconds daysLate affectedOrderCount open
  valueAtRisk { amount currency } rootCause { system entity key label } ${WORKFLOW}`;
const OPEN = `query BoardOpen($filter: ExceptionFilter) { exceptions(filter: $filter, first: 500) {
  transitionCursor totalCount totalValueAtRisk { amount currency } nodes { ${FIELDS} } } }`;
const CHANGES = `subscription BoardChanges($after: String) { exceptionsChanged(after: $after) {
  cursor action exception { ${FIELDS} } } }`;
const WORKFLOW_CHANGES = `subscription BoardWorkflow($after: String) { exceptionWorkflowChanged(after: $after) { entry { seq action actor exceptionId } } }`;
const DETAIL = `query BoardDetail($id: ID!) { exception(id: $id) { id kind description severity
  ${WORKFLOW.replace("commentCount }", "commentCount trail { seq action actor at summary } }")}
  affected { orderId customerId commercialPriority severity daysLate valueAtRisk { amount currency }
    order { confirmedDeliveryDate predictedDeliveryDate deliveryRisk stage customer { name }
      escalation { active reason expiresAt escalatedBy } } } } }`;
const RESULT = `clientMutationId replayed entry { seq action } workflow { status }`;
const ACTIONS = {
  acknowledge: `mutation BoardAck($id: ID!, $m: String!) { acknowledgeException(exceptionId: $id, clientMutationId: $m) { ${RESULT} } }`,
  assign: `mutation BoardAssign($id: ID!, $m: String!, $a: AssigneeInput) { assignException(exceptionId: $id, clientMutationId: $m, assignee: $a) { ${RESULT} } }`,
  comment: `mutation BoardComment($id: ID!, $m: String!, $t: String!) { commentOnException(exceptionId: $id, clientMutationId: $m, text: $t) { ${RESULT} } }`,
  snooze: `mutation BoardSnooze($id: ID!, $m: String!, $u: DateTime!) { snoozeException(exceptionId: $id, clientMutationId: $m, until: $u) { ${RESULT} } }`,
  resolve: `mutation BoardResolve($id: ID!, $m: String!, $r: String!) { resolveException(exceptionId: $id, clientMutationId: $m, reason: $r) { ${RESULT} } }`,
  reopen: `mutation BoardReopen($id: ID!, $m: String!) { reopenException(exceptionId: $id, clientMutationId: $m) { ${RESULT} } }`,
  escalate: `mutation BoardEscalate($o: ID!, $m: String!, $r: String!, $x: DateTime!) { escalateOrder(orderId: $o, clientMutationId: $m, reason: $r, expiresAt: $x) { replayed escalation { active } } }`,
  withdraw: `mutation BoardWithdraw($o: ID!, $m: String!) { withdrawEscalation(orderId: $o, clientMutationId: $m) { replayed escalation { active } } }`,
};
const TABS = {
  active: { status: ["NEW", "ACKNOWLEDGED"] },
  mine: { mine: true, status: ["NEW", "ACKNOWLEDGED", "SNOOZED"] },
  unassigned: { unassigned: true, status: ["NEW", "ACKNOWLEDGED"] },
  snoozed: { status: ["SNOOZED"] },
  resolved: { status: ["RESOLVED"] },
  all: {},
};

const { el, fmtDate, fmtTime, words } = ordergraph;
const rows = document.getElementById("rows");
const statusEl = document.getElementById("status");
const totalsEl = document.getElementById("totals");
const detail = document.getElementById("detail");
const SEVERITY = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1 };
const open = new Map();
let subscription = null;
let workflowSubscription = null;
let selected = null;
let tab = "active";
let reloadTimer = null;

function money(m) {
  if (!m) return "—";
  return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currency || "EUR", maximumFractionDigits: 0 }).format(m.amount);
}

// The token's subject (who "me" is for "Take it"); the server decides "mine" by itself.
function subject() {
  const tok = ordergraph.token();
  try {
    const part = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub || null;
  } catch (err) {
    return null;
  }
}

function clientMutationId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// The age on the plant's clock (the server's ageSeconds: the demo's plant runs faster than
// this browser's clock, so detectedAt alone would read as the future).
function age(seconds) {
  if (!(seconds >= 0)) return "—";
  const min = Math.floor(seconds / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} d`;
}

function owner(w) {
  if (!w || !w.assignee) return "—";
  return (w.assignee.kind === "TEAM" ? "team " : "") + w.assignee.name;
}

function ackCell(w) {
  if (!w) return "—";
  if (w.resolved) return `resolved by ${w.resolvedBy}`;
  if (w.snoozed) return `snoozed until ${fmtTime(w.snoozedUntil)}`;
  return w.acknowledged ? `${w.acknowledgedBy}, ${fmtTime(w.acknowledgedAt)}` : "not yet";
}

function renderRows() {
  const list = [...open.values()].sort((a, b) =>
    (SEVERITY[b.severity] - SEVERITY[a.severity]) || (b.valueAtRisk.amount - a.valueAtRisk.amount));
  rows.replaceChildren(...(list.length ? list.map((x) =>
    el("tr", {
      class: "exception" + (x.id === selected ? " selected" : "") + (x.workflow && x.workflow.snoozed ? " snoozed" : ""),
      "data-id": x.id, "data-kind": x.kind, "data-status": x.workflow ? x.workflow.status : "", onclick: () => showDetail(x.id),
    },
      el("td", {}, el("span", { class: "badge sev-" + x.severity }, x.severity)),
      el("td", {}, words(x.kind)),
      el("td", {}, `${x.rootCause.system.toUpperCase()} ${x.rootCause.label || x.rootCause.key}`),
      el("td", {}, x.description),
      el("td", {}, x.affectedOrderCount),
      el("td", {}, x.daysLate),
      el("td", {}, money(x.valueAtRisk)),
      el("td", { class: "owner" }, owner(x.workflow)),
      el("td", { class: "ack" }, ackCell(x.workflow)),
      el("td", { class: "age", title: "raised " + fmtTime(x.detectedAt) }, age(x.ageSeconds))))
    : [el("tr", {}, el("td", { colspan: "10", class: "empty" }, tab === "active" ? "No open exceptions." : "Nothing here."))]));
  const total = list.reduce((s, x) => s + x.valueAtRisk.amount, 0);
  totalsEl.textContent = `${list.length} shown · ${money({ amount: total, currency: list[0] ? list[0].valueAtRisk.currency : "EUR" })} at risk`;
}

async function act(name, variables) {
  const msg = document.getElementById("action-message");
  try {
    const base = name === "escalate" || name === "withdraw" ? { m: clientMutationId() } : { id: selected, m: clientMutationId() };
    const body = await ordergraph.query(ACTIONS[name], Object.assign(base, variables));
    if (body.errors) throw new Error(body.errors.map((e) => e.message).join("; "));
    if (msg) { msg.className = "muted"; msg.textContent = "done"; }
    for (const input of detail.querySelectorAll("input[id]")) input.value = "";
    scheduleReload(0);
  } catch (err) {
    if (msg) { msg.className = "error"; msg.textContent = err.message; }
  }
}

function actionBar(x) {
  const w = x.workflow;
  const me = subject();
  const assignName = el("input", { id: "assign-name", placeholder: "person or team", size: "14" });
  const assignKind = el("select", { id: "assign-kind" }, el("option", { value: "person" }, "person"), el("option", { value: "team" }, "team"));
  const comment = el("input", { id: "comment-text", placeholder: "comment", size: "24" });
  const snoozeFor = el("select", { id: "snooze-for" }, ["1", "4", "24"].map((h) => el("option", { value: h }, `${h} h`)));
  const reason = el("input", { id: "resolve-reason", placeholder: "reason", size: "24" });
  const buttons = [];
  if (!w.resolved) {
    if (!w.acknowledged) buttons.push(el("button", { id: "do-ack", onclick: () => act("acknowledge", {}) }, "Acknowledge"));
    if (me) buttons.push(el("button", { id: "do-take", onclick: () => act("assign", { a: { person: me } }) }, "Take it"));
    buttons.push(assignName, assignKind, el("button", {
      id: "do-assign",
      onclick: () => act("assign", { a: assignName.value.trim() ? { [assignKind.value]: assignName.value.trim() } : null }),
    }, "Assign"));
    buttons.push(snoozeFor, el("button", {
      id: "do-snooze",
      onclick: () => act("snooze", { u: new Date(Date.now() + Number(snoozeFor.value) * 3600000).toISOString() }),
    }, "Snooze"));
    buttons.push(reason, el("button", { id: "do-resolve", onclick: () => act("resolve", { r: reason.value }) }, "Resolve"));
  } else {
    buttons.push(el("button", { id: "do-reopen", onclick: () => act("reopen", {}) }, "Reopen"));
  }
  buttons.push(comment, el("button", { id: "do-comment", onclick: () => act("comment", { t: comment.value }) }, "Comment"));
  return el("div", { class: "actions" }, buttons, el("span", { id: "action-message", class: "muted" }));
}

// An order's escalation (planners): active until its expiry, with a way to end it; or a
// way to start one with the reason typed above it and a length.
function escalationCell(a) {
  const e = a.order && a.order.escalation;
  if (e && e.active) {
    return [el("span", { title: `${e.reason} (by ${e.escalatedBy})` }, `until ${fmtTime(e.expiresAt)}`), " ",
      el("button", { class: "do-withdraw", onclick: (ev) => { ev.stopPropagation(); act("withdraw", { o: a.orderId }); } }, "Withdraw")];
  }
  return el("button", {
    class: "do-escalate",
    onclick: (ev) => {
      ev.stopPropagation();
      const reason = document.getElementById("escalate-reason").value;
      const hours = Number(document.getElementById("escalate-for").value);
      act("escalate", { o: a.orderId, r: reason, x: new Date(Date.now() + hours * 3600000).toISOString() });
    },
  }, "Escalate");
}

async function showDetail(id, refresh = false) {
  selected = id;
  renderRows();
  detail.hidden = false;
  if (!refresh) detail.replaceChildren(el("div", { class: "muted" }, "Loading…"));
  try {
    const body = await ordergraph.query(DETAIL, { id });
    const x = body.data.exception;
    if (selected !== id) return; // another row was opened meanwhile
    if (!x) { detail.replaceChildren(el("div", { class: "muted" }, "This exception is no longer known.")); return; }
    const w = x.workflow;
    // A refresh (someone acted, a push, the minute's reload) must not eat what is being typed.
    const typed = {};
    for (const input of detail.querySelectorAll("input[id], select[id]")) typed[input.id] = input.value;
    const focused = document.activeElement && detail.contains(document.activeElement) ? document.activeElement.id : null;
    detail.replaceChildren(
      el("div", { class: "row" }, el("span", { class: "title" }, words(x.kind)), el("span", { class: "muted" }, x.description),
        el("button", { class: "close", onclick: closeDetail }, "Close")),
      el("div", { class: "wf", id: "workflow" },
        el("b", { id: "wf-status" }, words(w.status)), " · owner: ", el("span", { id: "wf-owner" }, owner(w)),
        " · acknowledged: ", w.acknowledged ? `${w.acknowledgedBy}, ${fmtTime(w.acknowledgedAt)}` : "not yet",
        w.snoozed ? ` · snoozed until ${fmtTime(w.snoozedUntil)}` : "",
        w.resolved ? ` · resolved by ${w.resolvedBy}: ${w.resolution}` : ""),
      actionBar(x),
      el("div", { class: "actions" }, el("span", { class: "muted" }, "Escalate an order below:"),
        el("input", { id: "escalate-reason", placeholder: "reason (e.g. key account line stop)", size: "30" }),
        el("select", { id: "escalate-for" }, ["24", "4", "72"].map((h) => el("option", { value: h }, `${h} h`)))),
      el("table", { id: "affected" },
        el("thead", {}, el("tr", {}, ["Order", "Customer", "Priority", "Severity", "Promised", "Predicted", "Days late", "Value at risk", "Stage", "Escalation"].map((h) => el("th", {}, h)))),
        el("tbody", {}, x.affected.map((a) => el("tr", { "data-order": a.orderId },
          el("td", {}, a.orderId),
          el("td", {}, a.order && a.order.customer ? a.order.customer.name : a.customerId),
          el("td", {}, words(a.commercialPriority)),
          el("td", {}, el("span", { class: "badge sev-" + a.severity }, a.severity)),
          el("td", {}, fmtDate(a.order && a.order.confirmedDeliveryDate)),
          el("td", {}, fmtDate(a.order && a.order.predictedDeliveryDate)),
          el("td", {}, a.daysLate),
          el("td", {}, money(a.valueAtRisk)),
          el("td", {}, a.order ? words(a.order.stage) : "—"),
          el("td", { class: "escalation" }, escalationCell(a)))))),
      el("div", { class: "muted" }, "Trail"),
      el("ol", { class: "trail", id: "trail" }, w.trail.length
        ? w.trail.map((e) => el("li", { "data-action": e.action }, `${fmtTime(e.at)} · ${e.actor} · ${e.summary}`))
        : [el("li", { class: "muted" }, "nobody has acted on it yet")]));
    for (const [key, value] of Object.entries(typed)) {
      const input = document.getElementById(key);
      if (input) input.value = value;
    }
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  } catch (err) {
    detail.replaceChildren(el("div", { class: "error" }, err.message));
  }
  // The detail sits above the list: bring it into view, wherever the clicked row was.
  if (!refresh) detail.scrollIntoView({ block: "start" });
}

function closeDetail() {
  selected = null;
  detail.hidden = true;
  renderRows();
}

function scheduleReload(delay) {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => { load(false); }, delay);
}

function inTab(x, action) {
  // A newly raised exception is NEW and unassigned; other tabs learn of it on reload.
  if (tab === "all") return true;
  return action === "RAISED" && (tab === "active" || tab === "unassigned");
}

async function load(resubscribe = true) {
  if (resubscribe) rows.replaceChildren(el("tr", {}, el("td", { colspan: "10", class: "empty" }, "Loading…")));
  let body;
  try {
    body = await ordergraph.query(OPEN, { filter: Object.assign({ openOnly: true }, TABS[tab]) });
  } catch (err) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: "10", class: "empty error" }, "Could not load exceptions: " + err.message)));
    statusEl.textContent = "error";
    return;
  }
  open.clear();
  for (const x of body.data.exceptions.nodes) open.set(x.id, x);
  renderRows();
  if (selected && !resubscribe) showDetail(selected, true);
  if (!resubscribe && subscription) return;
  if (subscription) subscription.close();
  if (workflowSubscription) workflowSubscription.close();
  subscription = ordergraph.subscribe(CHANGES, { after: body.data.exceptions.transitionCursor }, {
    onNext(payload) {
      const t = payload.data && payload.data.exceptionsChanged;
      if (!t) return;
      if (t.action === "CLEARED" || !t.exception.open) open.delete(t.exception.id);
      else if (open.has(t.exception.id) || inTab(t.exception, t.action)) open.set(t.exception.id, t.exception);
      renderRows();
      if (selected === t.exception.id) showDetail(selected, true);
    },
    onError(message) { statusEl.textContent = "error: " + message; },
    onStatus(s) { statusEl.textContent = s; },
  });
  // Someone (here or anywhere) acted: the tab's filter may now include or drop rows.
  workflowSubscription = ordergraph.subscribe(WORKFLOW_CHANGES, {}, {
    onNext() { scheduleReload(150); },
    onError(message) { statusEl.textContent = "error: " + message; },
  });
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    tab = button.dataset.tab;
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b === button);
    load(false);
  });
}
document.getElementById("signin").addEventListener("click", () => {
  ordergraph.setToken(document.getElementById("token").value);
  load();
  startClock();
});
// Ages move and snoozes run out with the clock alone: refresh the tab once a minute.
setInterval(() => { if (subscription) scheduleReload(0); }, 60000);
let clock = null;
function startClock() {
  if (clock === null) clock = ordergraph.plantClock(document.getElementById("clock"), 10);
}
if (ordergraph.token()) {
  document.getElementById("token").value = ordergraph.token();
  load();
  startClock();
}
