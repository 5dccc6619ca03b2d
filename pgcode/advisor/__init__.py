"""Index advice with hypothetical indexes (hypopg) or heuristics. Imports core, db and the leaves."""
