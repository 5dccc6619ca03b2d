"""Tool groups: every public module here registers its tools with @tool on import."""
