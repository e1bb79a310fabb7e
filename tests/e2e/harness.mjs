// What the end-to-end scripts share: free ports, the processes they start (stopped at exit,
// whether the run passes or fails), waiting for them, and the check that prints each step.
import { spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../..", import.meta.url));
const children = [];

export function fail(message) {
  throw new Error(message);
}

export function check(condition, message) {
  if (!condition) fail(message);
  console.log(`  ok  ${message}`);
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export function start(name, command, args, env) {
  const child = spawn(command, args, {
    cwd: root,
    env: { PATH: process.env.PATH, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  child.on("exit", (code) => {
    if (code !== null && code !== 0 && !child.stopping) {
      console.error(`${name} exited with ${code}:\n${log}`);
    }
  });
  children.push({ name, child, log: () => log });
  return child;
}

export function stopAll() {
  for (const { child } of children) {
    child.stopping = true;
    child.kill("SIGTERM");
  }
}

export async function waitFor(url, what) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.status < 500) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${what} did not start within 30 s (${url})`);
}

/** The upstream stand-in and Tether with the demo configuration, on free ports. */
export async function startTether({ resourceUri, secret, env = {} }) {
  const [upPort, tetherPort] = await Promise.all([freePort(), freePort()]);
  const issuer = `http://127.0.0.1:${tetherPort}`;
  const upstream = `http://127.0.0.1:${upPort}`;
  start("dev_upstream", "target/debug/examples/dev_upstream", ["--port", String(upPort), "--redirect-uri", `${issuer}/callback`], {});
  start("tether", "target/debug/tether", ["--config", "config/demo.toml", "serve"], {
    TETHER__ISSUER: issuer,
    TETHER__SERVER__BIND: `127.0.0.1:${tetherPort}`,
    TETHER__PROVIDERS__DEV__AUTHORIZE_URL: `${upstream}/authorize`,
    TETHER__PROVIDERS__DEV__TOKEN_URL: `${upstream}/token`,
    TETHER__PROVIDERS__DEV__USERINFO_URL: `${upstream}/user`,
    TETHER__PROVIDERS__DEV__REVOCATION_URL: `${upstream}/revoke`,
    TETHER__RESOURCES__DEMO__URI: resourceUri,
    TETHER__RESOURCES__DEMO__SECRET: secret,
    TETHER__LOG__LEVEL: "warn",
    ...env,
  });
  await Promise.all([waitFor(`${issuer}/healthz`, "Tether"), waitFor(`${upstream}/user`, "the upstream stand-in")]);
  return { issuer, upstream };
}

/** Runs `main`, prints the children's logs when it fails, and stops them either way. */
export async function run(main) {
  process.on("exit", stopAll);
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(1));
  let failed = false;
  try {
    await main();
  } catch (error) {
    failed = true;
    console.error(`e2e FAILED: ${error.stack ?? error}`);
    for (const { name, log } of children) {
      if (log()) console.error(`--- ${name} stderr ---\n${log()}`);
    }
  } finally {
    stopAll();
    process.exitCode = failed ? 1 : 0;
  }
}
