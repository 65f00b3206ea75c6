// Hive Gateway in front of ordergraph and the test's two subgraphs (tests/test_supergraph.py).
import { defineConfig } from '@graphql-hive/gateway';

export const gatewayConfig = defineConfig({
  // The client's bearer token goes to every subgraph on HTTP ...
  propagateHeaders: {
    fromClientToSubgraphs({ request }) {
      const authorization = request.headers.get('authorization');
      return authorization ? { authorization } : {};
    },
  },
  // ... and, for subscriptions, into ordergraph's graphql-transport-ws connection_init.
  transportEntries: {
    ordergraph: {
      options: {
        subscriptions: {
          kind: 'ws',
          location: '/graphql',
          options: { connectionParams: { Authorization: '{context.headers.authorization}' } },
        },
      },
    },
  },
  logging: process.env.GATEWAY_LOG_LEVEL || 'warn',
});
