"""The HTTP faces of pgcode: MCP (stdio and Streamable HTTP) and REST, assembled in one Starlette app.

Imports every layer below it; nothing imports it but the CLI."""
