// A Better Auth server as a Next.js frontend would run it: email and password sign-in,
// PostgreSQL storage, and the JWT plugin signing with the algorithm the tests ask for.
//
// Environment: PORT, DATABASE_URL (a database of its own), BETTER_AUTH_SECRET, JWT_ALG
// (EdDSA, ES256, RS256, PS256...), and ROTATION_SECONDS (optional: signing keys expire
// after that long, so the next token is signed with a new key).
import http from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins";
import pg from "pg";

const port = Number(process.env.PORT);
const baseURL = `http://127.0.0.1:${port}`;
const rotation = process.env.ROTATION_SECONDS ? Number(process.env.ROTATION_SECONDS) : undefined;

const auth = betterAuth({
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET,
  database: new pg.Pool({ connectionString: process.env.DATABASE_URL }),
  emailAndPassword: { enabled: true },
  plugins: [
    jwt({
      jwks: {
        keyPairConfig: { alg: process.env.JWT_ALG ?? "EdDSA" },
        ...(rotation ? { rotationInterval: rotation } : {}),
      },
    }),
  ],
});

const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const server = http.createServer(toNodeHandler(auth));
server.listen(port, "127.0.0.1", () => {
  console.log(`Better Auth listening on ${baseURL}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
