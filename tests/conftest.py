"""Test configuration: the fixtures live in tests/fix_*.py."""

pytest_plugins = ["tests.fix_db", "tests.fix_faces"]
