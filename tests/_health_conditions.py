"""The conditions the health checks look for, made for real in a test schema: an unused index over 1 MB, a
duplicate index, an invalid index (a failed CREATE UNIQUE INDEX CONCURRENTLY), dead tuples, sequences near
their limit (smallint, integer, identity, and a bigint sequence behind an integer column), an integer column
near its limit, a foreign key without an index, a NOT VALID constraint and a SECURITY DEFINER function without
search_path. Sessions (long query, idle in transaction, blocked) are made by the tests themselves.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

# Overrides that make seconds-long session conditions count, and list every object of a shared cluster.
SESSION_THRESHOLDS = {"longQueryWarningSeconds": 0.5, "idleInTransactionWarningSeconds": 0.5,
                      "lockWaitWarningSeconds": 0, "maxItems": 5000}


def make_conditions(dsn: str, s: str) -> None:
    """Build every object condition in schema `s` (which exists and is empty)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            -- 60k rows and an index over 1 MB that nothing ever scans
            CREATE TABLE {s}.unused_t (id int PRIMARY KEY, code text NOT NULL);
            INSERT INTO {s}.unused_t SELECT g, md5(g::text) FROM generate_series(1, 60000) g;
            CREATE INDEX unused_code_idx ON {s}.unused_t (code);
            -- an exact duplicate
            CREATE TABLE {s}.dup_t (id int PRIMARY KEY, a int);
            INSERT INTO {s}.dup_t SELECT g, g % 100 FROM generate_series(1, 1000) g;
            CREATE INDEX dup_a_idx ON {s}.dup_t (a);
            CREATE INDEX dup_a_copy ON {s}.dup_t (a);
            -- many dead tuples; autovacuum kept off so they stay
            CREATE TABLE {s}.dead_t (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
            INSERT INTO {s}.dead_t SELECT g, repeat('x', 60) FROM generate_series(1, 10000) g;
            DELETE FROM {s}.dead_t WHERE id <= 6000;
            -- sequences near their limit: smallint 97.7 %, integer 93 %, identity 79 %, and a bigint sequence
            -- that an integer column caps at 2^31 - 1 (97.8 %)
            CREATE TABLE {s}.seq_small (id smallserial PRIMARY KEY);
            SELECT setval(pg_get_serial_sequence('{s}.seq_small', 'id'), 32000);
            CREATE TABLE {s}.seq_int (id serial PRIMARY KEY);
            SELECT setval(pg_get_serial_sequence('{s}.seq_int', 'id'), 2000000000);
            CREATE TABLE {s}.seq_ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
            SELECT setval(pg_get_serial_sequence('{s}.seq_ident', 'id'), 1700000000);
            CREATE SEQUENCE {s}.wide_seq AS bigint;
            CREATE TABLE {s}.seq_wide (id int DEFAULT nextval('{s}.wide_seq'));
            SELECT setval('{s}.wide_seq', 2100000000);
            -- an integer column holding values near 2^31
            CREATE TABLE {s}.ints_t (v int);
            INSERT INTO {s}.ints_t SELECT 2000000000 + g FROM generate_series(1, 200) g;
            ANALYZE {s}.ints_t;
            -- a foreign key whose column no index leads, and a constraint never validated
            CREATE TABLE {s}.fk_parent (id int PRIMARY KEY);
            INSERT INTO {s}.fk_parent SELECT generate_series(1, 100);
            CREATE TABLE {s}.fk_child (id int PRIMARY KEY, parent_id int REFERENCES {s}.fk_parent);
            INSERT INTO {s}.fk_child SELECT g, 1 + g % 100 FROM generate_series(1, 2000) g;
            ANALYZE {s}.fk_child;
            ALTER TABLE {s}.fk_child ADD CONSTRAINT fk_child_id_positive CHECK (id > 0) NOT VALID;
            -- a SECURITY DEFINER function anyone's search_path can hijack
            CREATE FUNCTION {s}.definer_fn() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
            -- a table for the failed concurrent build
            CREATE TABLE {s}.inv_t (k int);
            INSERT INTO {s}.inv_t VALUES (1), (1), (2);
        """)
        try:  # fails on the duplicate 1s and leaves an invalid index behind
            c.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY inv_k_uidx ON {}.inv_t (k)").format(sql.Identifier(s)))
        except psycopg.errors.UniqueViolation:
            pass
        else:
            raise AssertionError("the concurrent unique index build was expected to fail")
        if c.info.server_version >= 150000:  # flush this session's counters now rather than within a second
            c.execute("SELECT pg_stat_force_next_flush()")
    wait_for_dead_tuples(dsn, s)


def wait_for_dead_tuples(dsn: str, s: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        deadline = time.monotonic() + 15
        while True:
            row = c.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'dead_t'",
                            (s,)).fetchone()
            if (row and row[0] >= 6000) or time.monotonic() > deadline:
                return
            time.sleep(0.1)


def by_check(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in out["checks"]}


def names_in(check: dict[str, Any], key: str, schema: str) -> set[str]:
    """Values of `key` among a check's listed objects that belong to `schema`."""
    return {str(r.get(key)) for r in check["details"].get("items", []) if r.get("schema") == schema}
