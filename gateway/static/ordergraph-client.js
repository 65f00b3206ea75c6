// A minimal GraphQL client for ordergraph's pages: queries over HTTP, subscriptions over
// graphql-transport-ws, with the bearer token on both. No dependencies, no CDN.
// It uses only the public GraphQL API, so it doubles as a reference for customers' portals.
"use strict";

const ordergraph = (() => {
  function token() {
    return sessionStorage.getItem("ordergraph-token") || "";
  }

  function setToken(value) {
    sessionStorage.setItem("ordergraph-token", value.replace(/^Bearer\s+/i, "").trim());
  }

  async function query(text, variables) {
    const headers = { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const resp = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query: text, variables: variables || {} }) });
    const body = await resp.json().catch(() => ({ errors: [{ message: "HTTP " + resp.status }] }));
    if (!resp.ok || (body.errors && !body.data)) {
      const message = (body.errors || body.error ? (body.errors || [{ message: body.error }]).map((e) => e.message).join("; ") : "HTTP " + resp.status);
      throw new Error(message);
    }
    return body;
  }

  // subscribe(text, variables, {onNext, onError, onStatus}) -> {close()}
  // Reconnects with backoff and resumes with the last cursor it saw (variables.after).
  function subscribe(text, variables, handlers) {
    let ws = null;
    let closed = false;
    let attempt = 0;
    let cursor = variables.after || null;
    const status = handlers.onStatus || (() => {});

    function connect() {
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
      ws = new WebSocket(url, "graphql-transport-ws");
      ws.onopen = () => {
        const payload = token() ? { Authorization: "Bearer " + token() } : {};
        ws.send(JSON.stringify({ type: "connection_init", payload }));
      };
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "connection_ack") {
          attempt = 0;
          status("live");
          const vars = Object.assign({}, variables, cursor ? { after: cursor } : {});
          ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: text, variables: vars } }));
        } else if (msg.type === "next") {
          if (msg.payload.extensions && msg.payload.extensions.cursor) cursor = msg.payload.extensions.cursor;
          handlers.onNext(msg.payload);
        } else if (msg.type === "error") {
          (handlers.onError || console.error)(msg.payload.map((e) => e.message).join("; "));
        } else if (msg.type === "ping") {
          ws.send(JSON.stringify({ type: "pong" }));
        }
      };
      ws.onclose = (ev) => {
        if (closed) return;
        if (ev.code === 4403 || ev.code === 4401) {
          status("signed out: " + (ev.reason || "token refused"));
          (handlers.onError || console.error)(ev.reason || "token refused");
          return;
        }
        status("reconnecting…");
        attempt += 1;
        setTimeout(connect, Math.min(10000, 250 * 2 ** attempt));
      };
    }

    connect();
    return {
      close() {
        closed = true;
        if (ws) ws.close();
      },
      get cursor() {
        return cursor;
      },
    };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtDate(value) {
    if (!value) return "—";
    const opts = { year: "numeric", month: "short", day: "numeric" };
    // A Date is a calendar day (the ship-to's or the plant's): show it as it is, not
    // moved into the browser's zone. A DateTime is an instant: the browser's local day.
    if (value.length === 10) return new Date(value + "T00:00:00Z").toLocaleDateString(undefined, { ...opts, timeZone: "UTC" });
    return new Date(value).toLocaleDateString(undefined, opts);
  }

  function fmtTime(value) {
    if (!value) return "—";
    return new Date(value).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  // An enum or a status code in words: IN_PRODUCTION -> "in production", InTransit -> "in transit".
  function words(value) {
    return String(value || "").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase().replace(/_/g, " ");
  }

  // Shows the plant's clock (Query.plantTime) in ``node``, refreshed every ``seconds``: the
  // instant answers are judged at. A simulated plant's clock runs faster than real time,
  // so the dates on the page are plant time, not the wall clock's.
  function plantClock(node, seconds) {
    async function tick() {
      try {
        const body = await query("query PlantTime { plantTime }", {});
        node.textContent = "plant time " + fmtTime(body.data.plantTime);
        node.title = "Dates and times on this page are the plant's clock (" + body.data.plantTime +
          "), which a simulated plant runs faster than real time.";
      } catch (err) {
        node.textContent = "";
      }
    }
    tick();
    return setInterval(tick, (seconds || 10) * 1000);
  }

  return { token, setToken, query, subscribe, el, fmtDate, fmtTime, words, plantClock };
})();
