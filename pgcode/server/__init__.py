"""The faces of pgcode: MCP (stdio and Streamable HTTP) and REST, assembled in one Starlette app."""
