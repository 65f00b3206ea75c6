"""The GraphiQL page served at ``/graphql`` to browsers.

Assets come from the gateway itself (``gateway/static/vendor``, filled by
``ordergraph assets``) so GraphiQL works on plant networks without internet. Without
them the page falls back to a CDN and the gateway logs a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .examples import EXAMPLES

log = logging.getLogger("ordergraph.graphiql")

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
VENDOR_FILES = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql.min.css",
    "graphql-ws.min.js",
)
CDN = {
    "react.production.min.js": "https://unpkg.com/react@18/umd/react.production.min.js",
    "react-dom.production.min.js": "https://unpkg.com/react-dom@18/umd/react-dom.production.min.js",
    "graphiql.min.js": "https://unpkg.com/graphiql@3/graphiql.min.js",
    "graphiql.min.css": "https://unpkg.com/graphiql@3/graphiql.min.css",
    "graphql-ws.min.js": "https://unpkg.com/graphql-ws@5/umd/graphql-ws.min.js",
}


def assets_present() -> bool:
    return all((VENDOR_DIR / f).is_file() for f in VENDOR_FILES)


def render_graphiql(default_id: str = "10000001") -> str:
    """The GraphiQL page with the example tabs."""
    if assets_present():
        src = {f: f"/static/vendor/{f}" for f in VENDOR_FILES}
    else:
        log.warning("GraphiQL assets missing in %s: the page loads them from a CDN (run `ordergraph assets`)", VENDOR_DIR)
        src = CDN
    tabs = [
        {"query": q, "variables": v.replace("10000001", default_id)} for q, v in EXAMPLES.values()
    ]
    return _PAGE.format(
        css=src["graphiql.min.css"],
        react=src["react.production.min.js"],
        react_dom=src["react-dom.production.min.js"],
        graphiql=src["graphiql.min.js"],
        graphql_ws=src["graphql-ws.min.js"],
        tabs=json.dumps(tabs),
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ordergraph · GraphiQL</title>
<link rel="stylesheet" href="{css}">
<style>
  body {{ margin: 0; height: 100vh; display: flex; flex-direction: column; font-family: system-ui, sans-serif; }}
  #bar {{ padding: 6px 10px; background: #1f2937; color: #f9fafb; display: flex; gap: 8px; align-items: center; }}
  #bar input {{ flex: 1; font-family: monospace; }}
  #graphiql {{ flex: 1; }}
</style>
</head>
<body>
<div id="bar"><strong>ordergraph</strong><label for="token">Token</label>
<input id="token" placeholder="Bearer token (sent on HTTP and in the WebSocket connection_init)">
</div>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{react}"></script>
<script src="{react_dom}"></script>
<script src="{graphiql}"></script>
<script src="{graphql_ws}"></script>
<script>
  const tokenInput = document.getElementById('token');
  // `ordergraph demo` prints a link with #token=...: take it, then drop it from the address bar.
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromLink) history.replaceState(null, '', location.pathname + location.search);
  tokenInput.value = fromLink || localStorage.getItem('ordergraph-token') || '';
  // /graphql?query=... opened in a browser: the query opens in the active tab (never run on
  // load). On a first visit it is the first tab; after one, GraphiQL restores the tabs it
  // stored and ignores defaultTabs, so the linked query also goes in as the `query` and
  // `variables` props: GraphiQL then opens the stored tab with that text, or a new one.
  const linked = new URLSearchParams(location.search);
  const linkedQuery = linked.get('query');
  const linkedVariables = linked.get('variables') || '';
  const tabs = linkedQuery
    ? [{{ query: linkedQuery, variables: linkedVariables }}, ...{tabs}]
    : {tabs};
  const headers = () => tokenInput.value ? {{ Authorization: 'Bearer ' + tokenInput.value.replace(/^Bearer\\s+/i, '') }} : {{}};
  let root = null;
  let wsClient = null;
  function render() {{
    localStorage.setItem('ordergraph-token', tokenInput.value);
    const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
    // Subscriptions go over graphql-transport-ws; the token rides in connection_init.
    // A new token: close the old socket (it was authenticated with the old token).
    if (wsClient) wsClient.dispose();
    wsClient = graphqlWs.createClient({{ url: wsUrl, connectionParams: headers, lazy: true }});
    const fetcher = GraphiQL.createFetcher({{ url: location.origin + '/graphql', headers: headers(), wsClient }});
    const props = {{ fetcher, defaultTabs: tabs, shouldPersistHeaders: false }};
    if (linkedQuery) Object.assign(props, {{ query: linkedQuery, variables: linkedVariables }});
    const el = React.createElement(GraphiQL, props);
    if (!root) root = ReactDOM.createRoot(document.getElementById('graphiql'));
    root.render(el);
  }}
  tokenInput.addEventListener('change', render);
  render();
</script>
</body>
</html>
"""
