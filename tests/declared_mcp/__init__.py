"""End-to-end tests of request-declared MCP tools (``{"type": "mcp", …}`` in a request's
``tools``): real MCP servers, the loopback upstream, the official clients."""
