"""Code mode and its tools: JavaScript/TypeScript run in pre-forked QuickJS workers, calling tools through invoke().

Imports core, db and the leaves; the faces hand it the runtime."""
