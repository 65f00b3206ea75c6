// Customer portal: where the customer wants proactive notices (webhooks, email), which
// kinds and in which language, and the notices sent. Its own only: the API refuses others.
"use strict";

(() => {
  const { el, fmtTime, words } = ordergraph;
  const box = document.getElementById("notifications");
  const KINDS = ["DELIVERY_DELAYED", "BACK_ON_TRACK", "SHIPPED", "DELIVERED"];
  const LIST = `{ notificationEndpoints { id channel target kinds language }
    notices(first: 20) { id orderId createdAt status items { kind predictedDeliveryDate tracking { carrier trackingNumber } }
      deliveries { channel target status attempts } } }`;
  const REGISTER = `mutation($input: NotificationEndpointInput!) { registerNotificationEndpoint(input: $input) {
    signingSecret endpoint { id } } }`;
  const PREFS = `mutation($id: ID!, $kinds: [NoticeKind!], $language: NoticeLanguage) {
    setNotificationPreferences(id: $id, kinds: $kinds, language: $language) { id } }`;
  const REMOVE = `mutation($id: ID!) { removeNotificationEndpoint(id: $id) }`;

  function say(text, error) {
    const msg = box.querySelector(".message");
    if (msg) msg.replaceWith(el("div", { class: "message" + (error ? " error" : "") }, text));
  }

  // Draw only what was read after the last change: a list read while another change was on
  // its way, or overtaken by a later read, would show (and a click on it would save) choices
  // that are no longer the customer's.
  let reads = 0;
  let changing = 0;

  async function act(query, variables, done) {
    let body;
    changing++;
    try {
      body = await ordergraph.query(query, variables);
      if (body.errors) throw new Error(body.errors.map((e) => e.message).join("; "));
    } catch (err) {
      changing--;
      await load(); // show what is saved, not the click that was refused
      say(err.message, true);
      return;
    }
    changing--;
    await load(done ? done(body.data) : "");
  }

  function kindBoxes(selected, onChange) {
    return KINDS.map((k) => {
      const input = el("input", { type: "checkbox", value: k });
      input.checked = !selected.length || selected.includes(k);
      input.addEventListener("change", onChange);
      return el("label", { class: "kind" }, input, " " + words(k));
    });
  }

  function endpointRow(e) {
    const kinds = kindBoxes(e.kinds, () => {
      const chosen = kinds.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
      act(PREFS, { id: e.id, kinds: chosen.length === KINDS.length ? [] : chosen }, () => "Preferences saved.");
    });
    const remove = el("button", {}, "Remove");
    remove.addEventListener("click", () => act(REMOVE, { id: e.id }, () => "Removed."));
    return el("div", { class: "row endpoint" }, el("b", {}, e.channel === "WEBHOOK" ? "Webhook" : "Email"), e.target,
      el("span", { class: "muted" }, e.language ? "in " + e.language.toUpperCase() : "your ERP language"), ...kinds, remove);
  }

  function form() {
    const channel = el("select", {}, el("option", { value: "EMAIL" }, "Email"), el("option", { value: "WEBHOOK" }, "Webhook"));
    const target = el("input", { placeholder: "orders@your-company.example or https://…", size: "40" });
    const language = el("select", {}, el("option", { value: "" }, "ERP language"), el("option", { value: "EN" }, "English"), el("option", { value: "DE" }, "Deutsch"));
    const add = el("button", {}, "Add");
    add.addEventListener("click", () => {
      const input = { channel: channel.value, target: target.value };
      if (language.value) input.language = language.value;
      act(REGISTER, { input }, (data) => {
        const secret = data.registerNotificationEndpoint.signingSecret;
        return secret ? "Webhook added. Its signing secret (Standard Webhooks), shown once: " + secret : "Email added.";
      });
    });
    return el("div", { class: "row" }, channel, target, language, add);
  }

  function noticeLine(n) {
    const what = n.items.map((i) => words(i.kind) + (i.predictedDeliveryDate ? " " + i.predictedDeliveryDate : "")
      + (i.tracking.length ? " (" + i.tracking.map((t) => t.carrier + " " + t.trackingNumber).join(", ") + ")" : "")).join("; ");
    const sent = n.deliveries.map((d) => `${d.target}: ${d.status}`).join(", ") || words(n.status);
    return el("li", {}, `${fmtTime(n.createdAt)} · order ${n.orderId} · ${what} · ${sent}`);
  }

  async function load(message) {
    if (!ordergraph.token()) return;
    const read = ++reads;
    let data;
    try {
      data = (await ordergraph.query(LIST)).data;
      if (read !== reads || changing) return; // a later read or change will draw
    } catch (err) {
      if (read !== reads || changing) return;
      box.hidden = false;
      box.replaceChildren(el("div", { class: "empty error" }, "Notifications: " + err.message));
      return;
    }
    box.hidden = false;
    box.replaceChildren(
      el("div", { class: "row" }, el("span", { class: "title" }, "Notifications"),
        el("span", { class: "muted" }, "we tell you when a delivery date moves, when your order ships and when it is delivered")),
      ...data.notificationEndpoints.map(endpointRow),
      form(),
      el("div", { class: "message" }, message || ""),
      data.notices.length ? el("ul", { class: "notices" }, data.notices.map(noticeLine)) : el("div", { class: "muted" }, "No notices sent yet."));
  }

  document.getElementById("signin").addEventListener("click", () => load());
  if (ordergraph.token()) load();
})();
