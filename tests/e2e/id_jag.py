"""Enterprise-managed authorization with the official MCP Python SDK (2.x): its
IdentityAssertionOAuthProvider presents an ID-JAG to Tether (RFC 7523 jwt-bearer) and calls a tool
of the example MCP server with the token it gets. Driven by tests/enterprise_sdk.rs, which signs the
ID-JAG as the company's identity provider would.

Usage: id_jag.py <mcp url> <tether issuer> <client id> <client secret> <id-jag>
Prints the tool's answer; exits non-zero on any failure.
"""

import asyncio
import sys

from mcp import ClientSession
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken


class Memory:
    """Token storage for one run."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def main(server: str, issuer: str, client_id: str, secret: str, id_jag: str) -> None:
    asked: list[tuple[str, str]] = []

    async def assertion(audience: str, resource: str) -> str:
        asked.append((audience, resource))
        return id_jag

    storage = Memory()
    auth = IdentityAssertionOAuthProvider(
        server_url=server,
        storage=storage,
        client_id=client_id,
        client_secret=secret,
        issuer=issuer,
        assertion_provider=assertion,
        scope="files:read",
    )
    async with create_mcp_http_client(auth=auth) as http:
        async with streamable_http_client(server, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("whoami", {})
    if asked != [(issuer, server)]:
        raise SystemExit(f"the SDK asked for an ID-JAG for {asked}, not for ({issuer}, {server})")
    if storage.tokens is None or storage.tokens.refresh_token is not None:
        raise SystemExit("expected an access token and no refresh token")
    text = "\n".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        raise SystemExit(f"the tool failed: {text}")
    print(text)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
