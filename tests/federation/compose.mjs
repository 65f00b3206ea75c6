// Compose subgraphs into a supergraph with the real composition library.
// stdin: JSON [{ "name", "url", "sdl" }]; stdout: the supergraph SDL; errors: stderr, exit 1.
import { readFileSync } from 'node:fs';
import { parse } from 'graphql';
import { composeServices, compositionHasErrors } from '@theguild/federation-composition';

const services = JSON.parse(readFileSync(0, 'utf8')).map((s) => ({
  name: s.name,
  url: s.url,
  typeDefs: parse(s.sdl),
}));
const result = composeServices(services);
if (compositionHasErrors(result)) {
  for (const error of result.errors) console.error(error.message);
  process.exit(1);
}
process.stdout.write(result.supergraphSdl);
