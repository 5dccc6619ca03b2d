"""Code mode: JavaScript/TypeScript run in pre-forked QuickJS workers, calling tools through invoke()."""
