"""The one execution path: registry, invoke(), tool context, runtime. Imports guard, db and the leaves."""
