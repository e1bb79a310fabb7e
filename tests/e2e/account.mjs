// End-to-end in a real headless Chromium (Debian's package, driven by playwright-core; no
// browser is downloaded): a person approves two MCP clients, opens "Connected apps", sees one
// card per client with the right badge and host, removes one with the keyboard (its tokens
// die, the other client's live on), disconnects the upstream account, signs out and signs in
// again at the provider from the page. Every
// page is checked with axe-core (loaded by the test, not the page) for serious or critical
// findings, and screenshots of the consent, account (desktop and 360 px) and error pages are
// saved to $SCREENSHOTS (default target/e2e-screenshots; `make screenshots` writes docs/).
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

import { chromium } from "playwright-core";

import { check, fail, freePort, root, run, startTether } from "./harness.mjs";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const shots = path.resolve(root, process.env.SCREENSHOTS ?? "target/e2e-screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** axe-core in the page (through the DevTools protocol, so the page's CSP stays on). */
async function accessible(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const all = result.violations.map((v) => `${v.id} (${v.impact})`);
  check(bad.length === 0, `axe: no serious or critical findings on ${what}${all.length ? `; minor: ${all.join(", ")}` : ""}`);
  if (bad.length) console.error(JSON.stringify(bad, null, 2));
  return all;
}

async function shoot(page, name) {
  await page.screenshot({ path: path.join(shots, name), fullPage: true });
  console.log(`      screenshot ${path.relative(root, path.join(shots, name))}`);
}

async function register(issuer, name, redirect) {
  const response = await fetch(`${issuer}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: name,
      redirect_uris: [redirect],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  check(response.status === 201, `registered "${name}"`);
  return { ...(await response.json()), redirect };
}

async function token(issuer, form) {
  const response = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form).toString(),
  });
  return { status: response.status, body: await response.json() };
}

async function introspect(issuer, secret, accessToken) {
  const response = await fetch(`${issuer}/introspect`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${Buffer.from(`demo:${secret}`).toString("base64")}`,
    },
    body: new URLSearchParams({ token: accessToken }).toString(),
  });
  return (await response.json()).active === true;
}

/** Authorizes `client` in `page`: consent, the upstream sign-in if Tether sends us there,
 *  and the code from the redirect (caught before it leaves the browser). */
async function authorize(page, issuer, resource, client, redirected, { user, screenshot }) {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const url = new URL(`${issuer}/authorize`);
  for (const [k, v] of Object.entries({
    response_type: "code",
    client_id: client.client_id,
    redirect_uri: client.redirect,
    state: "st",
    code_challenge: challenge,
    code_challenge_method: "S256",
    resource,
    scope: "files:read files:write",
  })) url.searchParams.set(k, v);
  const arrived = redirected(client.redirect);
  await page.goto(url.href);
  check((await page.locator("h1").textContent()).includes(client.client_name), `the consent page names ${client.client_name}`);
  if (screenshot) {
    await accessible(page, "the consent page");
    await shoot(page, screenshot);
  }
  await page.getByRole("button", { name: "Approve" }).click();
  if (user) {
    await page.waitForURL((u) => !u.href.startsWith(issuer));
    await page.getByLabel("User name").fill(user);
    await page.getByRole("button", { name: "Authorize" }).click();
  }
  const code = new URL(await arrived).searchParams.get("code") ?? fail("no code in the redirect");
  await page.waitForURL((u) => u.href.startsWith(client.redirect));
  const { status, body } = await token(issuer, {
    grant_type: "authorization_code",
    code,
    redirect_uri: client.redirect,
    code_verifier: verifier,
    client_id: client.client_id,
    resource,
  });
  check(status === 200 && body.access_token && body.refresh_token, `${client.client_name} got its tokens`);
  return body;
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const [resourcePort, callbackPort] = await Promise.all([freePort(), freePort()]);
  const resource = `http://127.0.0.1:${resourcePort}/mcp`;
  const secret = randomBytes(18).toString("hex");
  const { issuer } = await startTether({ resourceUri: resource, secret });

  const desktop = await register(issuer, "Desktop Agent", `http://127.0.0.1:${callbackPort}/callback`);
  const chat = await register(issuer, "Team Chat", "https://chat.example.com/oauth/callback");

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    // The clients' redirect URIs: the browser "arrives" there, and the test takes the code.
    const waiting = new Map();
    const redirected = (prefix) => new Promise((resolve) => waiting.set(prefix, resolve));
    await context.route((u) => [...waiting.keys()].some((p) => u.href.startsWith(p)), (route) => {
      const href = route.request().url();
      for (const [prefix, resolve] of waiting) if (href.startsWith(prefix)) resolve(href);
      route.fulfill({ status: 200, contentType: "text/plain", body: "back at the client" });
    });
    const page = await context.newPage();
    const violations = [];
    page.on("console", (m) => m.type() === "error" && violations.push(m.text()));

    const first = await authorize(page, issuer, resource, desktop, redirected, { user: "ann" });
    const second = await authorize(page, issuer, resource, chat, redirected, { screenshot: "consent.png" });
    check(await introspect(issuer, secret, second.access_token), "the second client, approved without a second upstream sign-in, works");

    // The account page: one card per client, with its badge and host.
    await page.goto(`${issuer}/account`);
    check((await page.locator("h1").textContent()) === "Connected apps", "the account page opens signed in");
    const cards = page.locator("section.card.client");
    const desktopCard = cards.filter({ has: page.locator("h3", { hasText: "Desktop Agent" }) });
    const chatCard = cards.filter({ has: page.locator("h3", { hasText: "Team Chat" }) });
    check((await desktopCard.count()) === 1 && (await chatCard.count()) === 1, "one card per client");
    check((await chatCard.locator(".badge").textContent()) === "Not verified", "a self-registered client is marked not verified");
    check((await chatCard.textContent()).includes("chat.example.com"), "its card names where its access goes");
    check((await desktopCard.textContent()).includes("127.0.0.1"), "the local client's card names 127.0.0.1");
    check((await chatCard.textContent()).includes("Read your files"), "scopes are shown in words");
    check((await chatCard.textContent()).includes("as your Dev Upstream account"), "the card says which upstream account acts");
    const border = await page.locator("section.card").first().evaluate((e) => getComputedStyle(e).borderTopStyle);
    check(border === "solid", "Tether's own stylesheet is applied under its CSP");
    await accessible(page, "the account page");
    await shoot(page, "account.png");
    await page.setViewportSize({ width: 360, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, `nothing is wider than a 360 px screen (overflow ${overflow} px)`);
    await accessible(page, "the account page at 360 px");
    await shoot(page, "account-360.png");
    await page.setViewportSize({ width: 1100, height: 900 });

    // Remove the desktop client with the keyboard only.
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => document.activeElement?.textContent?.includes("Remove access of Desktop Agent"));
    }
    check(reached, "Tab reaches \"Remove access\" of Desktop Agent");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/account\/remove\?/);
    const confirm = await page.locator("main").textContent();
    check(confirm.includes("Data it already fetched is not deleted"), "the confirmation says fetched data is not deleted");
    await accessible(page, "the removal confirmation");
    await page.getByRole("button", { name: "Remove access" }).click();
    check((await page.locator("[role=status]").textContent()).includes("1 authorization ended"), "the result page says what ended");

    check(!(await introspect(issuer, secret, first.access_token)), "the removed client's access token introspects inactive");
    const dead = await token(issuer, { grant_type: "refresh_token", refresh_token: first.refresh_token, client_id: desktop.client_id });
    check(dead.status === 400 && dead.body.error === "invalid_grant", "the removed client's refresh token fails");
    check(await introspect(issuer, secret, second.access_token), "the other client's token still works");
    const renewed = await token(issuer, { grant_type: "refresh_token", refresh_token: second.refresh_token, client_id: chat.client_id });
    check(renewed.status === 200, "the other client still refreshes");

    // Disconnect the upstream account: the rest ends, revoked at the provider too.
    await page.goto(`${issuer}/account`);
    check((await cards.count()) === 1, "one card is left");
    check((await page.locator("ol.activity").textContent()).includes("was removed by you"), "the activity list shows the removal");
    await page.getByRole("link", { name: "Disconnect Dev Upstream" }).click();
    const box = page.getByLabel(/Also revoke Tether's access at Dev Upstream/);
    check(await box.isChecked(), "\"also revoke at the provider\" is on by default");
    await accessible(page, "the disconnect confirmation");
    await page.getByRole("button", { name: "Disconnect Dev Upstream" }).click();
    const status = await page.locator("[role=status]").textContent();
    check(status.includes("1 authorization ended") && status.includes("revoked too"), `the result shows the upstream result: "${status.trim()}"`);
    check(!(await introspect(issuer, secret, renewed.body.access_token)), "after disconnecting, the other client's token is inactive");
    await page.goto(`${issuer}/account`);
    check((await page.locator("main").textContent()).includes("No application has access"), "nothing is left on the page");

    // Sign out; the page then offers the sign-in.
    await page.getByRole("button", { name: "Sign out" }).click();
    check((await page.locator("h1").textContent()) === "Signed out", "signing out says so");
    await page.goto(`${issuer}/account`);
    check(await page.getByRole("link", { name: "Sign in with Dev Upstream" }).isVisible(), "signed out, the page offers the sign-in");
    await accessible(page, "the sign-in page");
    await page.getByRole("link", { name: "Sign in with Dev Upstream" }).click();
    await page.getByLabel("User name").fill("ann");
    await page.getByRole("button", { name: "Authorize" }).click();
    await page.waitForURL(`${issuer}/account`);
    check((await page.locator("h1").textContent()) === "Connected apps", "signing in at the provider lands on the page");
    check((await page.locator("ol.activity").textContent()).includes("You signed in with Dev Upstream"), "the sign-in is in the activity list");

    check(violations.length === 0, `no console errors (CSP or otherwise): ${violations.join("; ")}`);

    // An error page (its 400 is the one console error expected).
    await page.goto(`${issuer}/authorize?client_id=nobody&response_type=code`);
    check((await page.locator("h1").textContent()) === "Authorization failed", "a bad request shows the error page");
    await accessible(page, "the error page");
    await shoot(page, "error.png");
  } finally {
    await browser.close();
  }
  console.log("e2e: the account page works in Chromium");
}

await run(main);
