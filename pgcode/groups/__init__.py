"""The tool groups, one module or package each, registering their tools with @tool on import.

Imports core, health, advisor, db and the leaves; never code mode, the report or a face."""
