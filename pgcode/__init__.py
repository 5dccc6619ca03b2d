"""pgcode: a PostgreSQL admin toolkit served over MCP, REST/JSON, a CLI and code mode."""

__version__ = "0.1.0"
