// End-to-end: the official MCP TypeScript SDK client (its own discovery, dynamic registration,
// PKCE and token code) against Tether, the example MCP server and the upstream stand-in.
// The browser is simulated: redirects are followed and the consent and login forms submitted.
//
// Run with `make e2e` (builds the binaries first). Every process started here is stopped at
// the end, whether the run passes or fails.
import { randomBytes } from "node:crypto";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { ElicitRequestSchema, ToolListChangedNotificationSchema, UrlElicitationRequiredError } from "@modelcontextprotocol/sdk/types.js";

import { check, fail, freePort, run, start, startTether, waitFor } from "./harness.mjs";

/** An MCP host's credential store, in memory, as the SDK's OAuthClientProvider. */
class MemoryProvider {
  constructor(redirectUrl) {
    this._redirectUrl = redirectUrl;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._state = undefined;
    this.authorizationUrl = undefined;
    this.saved = [];
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: "Tether e2e (MCP TypeScript SDK)",
      redirect_uris: [this._redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    this._state = randomBytes(16).toString("hex");
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
    this.saved.push(tokens);
  }
  redirectToAuthorization(url) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    return this._verifier;
  }
}

/** A browser: one cookie jar (cookies do not depend on the port), redirects followed by hand. */
class Browser {
  constructor() {
    this.cookies = new Map();
  }
  async request(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const response = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const eq = pair.indexOf("=");
      this.cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return response;
  }
  async submit(url, fields) {
    return this.request(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

/** Consent at Tether, sign-in at the upstream, back through Tether to the client. */
async function authorizeInBrowser(authorizationUrl, issuer, expectedState, user) {
  const browser = new Browser();
  const consentPage = await browser.request(authorizationUrl);
  check(consentPage.status === 200, "Tether shows its consent page");
  const html = await consentPage.text();
  const consent = html.match(/name="consent" value="([^"]+)"/)?.[1] ?? fail("no consent id on the page");
  const toUpstream = await browser.submit(new URL("/consent", issuer), { consent, decision: "approve" });
  check(toUpstream.status === 303, "approving sends the browser to the upstream provider");
  const upstreamUrl = new URL(toUpstream.headers.get("location"));
  const loginPage = await browser.request(upstreamUrl);
  check(loginPage.status === 200, "the upstream shows its sign-in page");
  const fields = Object.fromEntries(upstreamUrl.searchParams);
  const back = await browser.submit(new URL(upstreamUrl.pathname, upstreamUrl.origin), { ...fields, username: user, decision: "approve" });
  check(back.status === 302, "the upstream redirects back to Tether's callback");
  const toClient = await browser.request(back.headers.get("location"));
  check(toClient.status === 302, "Tether redirects to the client with its own code");
  const final = new URL(toClient.headers.get("location"));
  check(final.searchParams.get("iss") === issuer, "the response carries iss = the issuer (RFC 9207)");
  check(final.searchParams.get("state") === expectedState, "the client's state comes back unchanged");
  return final.searchParams.get("code") ?? fail("no code in the redirect");
}

/** The connect flow's browser leg: Tether's consent page, the upstream sign-in, back to Tether. */
async function connectInBrowser(link, issuer, user) {
  const browser = new Browser();
  const consentPage = await browser.request(link);
  check(consentPage.status === 200, "the connect link opens Tether's consent page");
  const html = await consentPage.text();
  check(html.includes("Connect Dev Upstream to Demo MCP server?"), "the page names the MCP server and the provider");
  const consent = html.match(/name="consent" value="([^"]+)"/)?.[1] ?? fail("no consent id on the page");
  const toUpstream = await browser.submit(new URL("/consent", issuer), { consent, decision: "approve" });
  check(toUpstream.status === 303, "approving sends the browser upstream");
  const upstreamUrl = new URL(toUpstream.headers.get("location"));
  await browser.request(upstreamUrl);
  const fields = Object.fromEntries(upstreamUrl.searchParams);
  const back = await browser.submit(new URL(upstreamUrl.pathname, upstreamUrl.origin), { ...fields, username: user, decision: "approve" });
  const toFinish = await browser.request(back.headers.get("location"));
  check(toFinish.status === 302 && toFinish.headers.get("location").startsWith(`${issuer}/connect/finish`), "Tether's callback hands over to /connect/finish");
  const done = await browser.request(toFinish.headers.get("location"));
  check(done.status === 200 && (await done.text()).includes("Connected"), "the user sees that the session is connected");
  const replay = await new Browser().request(link);
  check(replay.status === 400, "the used link is dead");
}

/// A "connect first" link opened by the person: the provider's sign-in, back to /account.
async function reconnectInBrowser(link, issuer, user) {
  const browser = new Browser();
  const toUpstream = await browser.request(link);
  check(toUpstream.status === 302, "the connect-first link sends the browser to the provider");
  const upstreamUrl = new URL(toUpstream.headers.get("location"));
  await browser.request(upstreamUrl);
  const fields = Object.fromEntries(upstreamUrl.searchParams);
  const back = await browser.submit(new URL(upstreamUrl.pathname, upstreamUrl.origin), { ...fields, username: user, decision: "approve" });
  const done = await browser.request(back.headers.get("location"));
  check(done.status === 302 && done.headers.get("location") === `${issuer}/account`, "connected again, the person lands on their connected apps");
}

function text(result) {
  return result.content.map((c) => c.text).join("\n");
}

async function main() {
  const [mcpPort, callbackPort] = await Promise.all([freePort(), freePort()]);
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  const secret = randomBytes(18).toString("hex");
  const webhookSecret = randomBytes(18).toString("hex");
  const { issuer, upstream } = await startTether({
    resourceUri: mcpUrl,
    secret,
    env: {
      TETHER__RESOURCES__DEMO__CONNECT_WEBHOOK: `http://127.0.0.1:${mcpPort}/hooks/tether`,
      TETHER__RESOURCES__DEMO__CONNECT_WEBHOOK_SECRET: webhookSecret,
    },
  });
  start("mcp_server", "target/debug/examples/mcp_server", [], {
    MCP_BIND: `127.0.0.1:${mcpPort}`,
    MCP_RESOURCE: mcpUrl,
    TETHER_ISSUER: issuer,
    MCP_RESOURCE_ID: "demo",
    MCP_RESOURCE_SECRET: secret,
    UPSTREAM_USER_URL: `${upstream}/user`,
    MCP_WEBHOOK_SECRET: webhookSecret,
  });
  await waitFor(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`, "the MCP server");
  console.log(`Tether ${issuer}, MCP server ${mcpUrl}, upstream ${upstream}`);

  const provider = new MemoryProvider(`http://127.0.0.1:${callbackPort}/callback`);

  // 1. Unauthenticated connect: 401 → PRM → AS metadata → DCR → authorization URL.
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  try {
    await new Client({ name: "tether-e2e", version: "1.0.0" }).connect(first);
    fail("connecting without a token succeeded");
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  check(provider.clientInformation()?.client_id, "the SDK registered a client dynamically");
  const authorizationUrl = provider.authorizationUrl ?? fail("the SDK never asked to open a browser");
  check(authorizationUrl.origin === issuer, "the SDK found Tether through the MCP server's metadata");
  check(authorizationUrl.searchParams.get("code_challenge_method") === "S256", "the SDK uses PKCE S256");
  check(authorizationUrl.searchParams.get("resource") === mcpUrl, "the SDK names the MCP server as resource");

  // 2. The user approves; the SDK exchanges the code with its verifier.
  const code = await authorizeInBrowser(authorizationUrl, issuer, provider._state, "e2e-user");
  await first.finishAuth(code);
  const initial = provider.tokens();
  check(initial?.access_token && initial?.refresh_token, "the SDK obtained an access and a refresh token");

  // 3. Connected: list tools and call whoami with Tether's token.
  const client = new Client({ name: "tether-e2e", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  const tools = (await client.listTools()).tools.map((t) => t.name);
  check(tools.includes("whoami"), `tools listed: ${tools.join(", ")}`);
  const who = text(await client.callTool({ name: "whoami", arguments: {} }));
  check(who.includes("You are e2e-user"), `whoami answered with the upstream identity: "${who}"`);

  // 4. Force a refresh: the stored access token stops working, the MCP server answers 401,
  //    and the SDK refreshes with its refresh token and retries.
  provider._tokens = { ...initial, access_token: "expired.or.revoked" };
  const again = text(await client.callTool({ name: "whoami", arguments: {} }));
  const refreshed = provider.tokens();
  check(again.includes("You are e2e-user"), "after the 401 the SDK refreshed and the call succeeded");
  check(refreshed.access_token !== initial.access_token && refreshed.access_token !== "expired.or.revoked", "a new access token was issued");
  check(refreshed.refresh_token && refreshed.refresh_token !== initial.refresh_token, "the refresh token was rotated");

  // 5. The rotated-out refresh token mints nothing new: within the grace window (30 s) a
  //    duplicate gets the very pair the SDK already holds; after it, reuse revokes the grant
  //    (tested in tests/security.rs).
  const replay = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: initial.refresh_token, client_id: provider.clientInformation().client_id }),
  });
  const replayed = await replay.json();
  check(replay.status === 200 && replayed.refresh_token === refreshed.refresh_token && replayed.access_token === refreshed.access_token,
    "replaying the old refresh token returns the same pair, not a second rotation");

  // 5b. Connect first: the person removes the app at the provider. The MCP server's API call
  //     is refused, it tells Tether, Tether confirms with the provider, and the tool answers
  //     with a link (URL elicitation for a client that declares it, a tool result otherwise).
  const introspected = await (await fetch(`${issuer}/introspect`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`demo:${secret}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: provider.tokens().access_token }),
  })).json();
  const removed = await fetch(`${upstream}/revoke`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: introspected.upstream.access_token, client_id: "tether-dev" }),
  });
  check(removed.status === 200, "the app was removed at the provider");
  const urlClient = new Client({ name: "tether-e2e-url", version: "1.0.0" }, { capabilities: { elicitation: { url: {} } } });
  await urlClient.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  let reconnectLink;
  try {
    await urlClient.callTool({ name: "whoami", arguments: {} });
    fail("whoami succeeded with a credential the provider refuses");
  } catch (error) {
    if (!(error instanceof UrlElicitationRequiredError)) throw error;
    reconnectLink = error.elicitations[0]?.url;
  }
  check(reconnectLink?.startsWith(`${issuer}/reconnect/`), `a client with URL elicitation got MCP's -32042 with Tether's link (${reconnectLink})`);
  const plain = text(await client.callTool({ name: "whoami", arguments: {} }));
  check(plain.includes(reconnectLink), `a client without it got a tool result with the same link: "${plain}"`);
  await reconnectInBrowser(reconnectLink, issuer, "e2e-user");
  const restored = text(await client.callTool({ name: "whoami", arguments: {} }));
  check(restored.includes("You are e2e-user"), `after connecting again the same MCP tokens work: "${restored}"`);
  check(provider.tokens().access_token === refreshed.access_token, "the client never had to authorize again");
  await urlClient.close();

  await client.close();
  console.log("e2e: the MCP TypeScript SDK completed the flow against Tether");

  // 6. Session mode (the connect flow): no OAuth for the client; the server asks the user to
  //    connect through Tether and unlocks its tools when Tether reports the connection.
  const session = new Client({ name: "tether-e2e-session", version: "1.0.0" });
  let toolsChanged;
  const changed = new Promise((resolve) => (toolsChanged = resolve));
  session.setNotificationHandler(ToolListChangedNotificationSchema, () => toolsChanged());
  await session.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${mcpPort}/session-mcp`)));
  const before = (await session.listTools()).tools.map((t) => t.name);
  check(before.length === 1 && before[0] === "authorize", `before connecting only authorize is listed (${before.join(", ")})`);
  const answer = text(await session.callTool({ name: "authorize", arguments: {} }));
  const link = answer.match(/http:\/\/\S+\/connect\/link\/[A-Za-z0-9_-]+/)?.[0] ?? fail(`no connect link in "${answer}"`);
  check(link.startsWith(`${issuer}/connect/link/`), "authorize returned Tether's connect link");
  await connectInBrowser(link, issuer, "session-user");
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no tools/list_changed within 10 s")), 10_000));
  await Promise.race([changed, timeout]);
  check(true, "the server sent notifications/tools/list_changed");
  const after = (await session.listTools()).tools.map((t) => t.name);
  check(after.includes("whoami") && !after.includes("authorize"), `after connecting the real tools are listed (${after.join(", ")})`);
  const whoSession = text(await session.callTool({ name: "whoami", arguments: {} }));
  check(whoSession.includes("You are session-user"), `whoami works with the session's upstream credential: "${whoSession}"`);
  await session.close();

  // 7. A client that declares URL-mode elicitation is sent the link as an elicitation too.
  const eliciting = new Client({ name: "tether-e2e-elicit", version: "1.0.0" }, { capabilities: { elicitation: { url: {} } } });
  let elicited;
  const elicitation = new Promise((resolve) => (elicited = resolve));
  eliciting.setRequestHandler(ElicitRequestSchema, (request) => {
    elicited(request.params);
    return { action: "accept" };
  });
  await eliciting.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${mcpPort}/session-mcp`)));
  const offered = text(await eliciting.callTool({ name: "authorize", arguments: {} }));
  const elicitTimeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no elicitation within 10 s")), 10_000));
  const params = await Promise.race([elicitation, elicitTimeout]);
  check(params.mode === "url" && params.url.startsWith(`${issuer}/connect/link/`) && offered.includes(params.url),
    "the server asked for URL-mode elicitation with the same connect link");
  await eliciting.close();
  console.log("e2e: the session-mode flow completed through Tether's connect API");
}

await run(main);
