"""citext group: case-insensitive text; find the columns that want it, convert them safely, search and compare."""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext, optional
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef
from pgcode.groups._extensions import create_extension, extension_schema
from pgcode.groups._tabular import (
    ColumnName,
    column_field,
    fetch_limited,
    limit_field,
    return_columns_field,
    select_list,
    table_info,
)
from pgcode.types import Effect

# Column names that usually hold values people type in any case and expect to match regardless of it.
_NAME_HINT = re.compile(r"e_?mail|user_?name|login|handle|nick_?name|screen_?name|domain|host_?name|slug|"
                        r"(^|_)tags?($|_)|(^|_)alias($|_)")
# Dependents that stop ALTER COLUMN ... TYPE: PostgreSQL cannot rebuild them itself.
_BLOCKING = {"view", "materialized_view", "rule", "policy", "trigger", "generated_column"}
_CONVERTIBLE = {"text", "varchar"}


class CreateExtensionIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", min_length=1, max_length=IDENT_MAX)


@tool(group="citext", effect=Effect.ADMIN)
async def citext_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the citext extension (case-insensitive text type).

    Says whether it was already there. schema: where to install it (default: the first schema of the
    search_path, usually public). Runs in autocommit so that the type is usable by the next call.
    """
    ctx.use_autocommit()
    return await create_extension(ctx, "citext", package="the PostgreSQL contrib package", schema=args.schema_)


async def _citext_type(ctx: ToolContext) -> sql.Composable:
    return sql.Identifier(await extension_schema(ctx, "citext"), "citext")


async def _citext_eq(ctx: ToolContext) -> sql.Composable:
    """citext's own = operator, named by schema so that text = text is never picked instead."""
    return sql.SQL("OPERATOR({}.=)").format(sql.Identifier(await extension_schema(ctx, "citext")))


class ConvertColumnIn(TableRef):
    column: str = column_field("Column to convert")


async def _column(ctx: ToolContext, schema: str, table: str, column: str) -> dict[str, Any]:
    row = await ctx.fetchone(
        "SELECT c.oid, c.relkind::text AS relkind, a.attnum, a.attinhcount, t.typname::text AS typname, "
        "format_type(a.atttypid, a.atttypmod) AS type, "
        "EXISTS (SELECT 1 FROM pg_partitioned_table pt WHERE pt.partrelid = c.oid "
        "        AND a.attnum = ANY (pt.partattrs::int2[])) AS partition_key "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_type t ON t.oid = a.atttypid WHERE n.nspname = %s AND c.relname = %s",
        (column, schema, table))
    label = f'"{schema}"."{table}"'
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"table {label} does not exist", hint="pg_list_tables lists the tables")
    if row["attnum"] is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"{label} has no column {column!r}",
                        hint="pg_describe_table lists the columns")
    row["label"] = label
    return row


async def _dependents(ctx: ToolContext, col: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, blocking): what PostgreSQL rebuilds with the column, and what stops the type change."""
    rows = await ctx.fetch(load_query("citext_column_dependents"), {"oid": col["oid"], "attnum": col["attnum"]})
    kept: list[dict[str, Any]] = []
    blocking: list[dict[str, Any]] = []
    for r in rows:
        if r["kind"] in _BLOCKING:
            blocking.append({"kind": r["kind"], "name": r["name"]})
        elif r["kind"] == "foreign_key" and r["peer_type"] != "citext":
            blocking.append({"kind": "foreign_key", "name": r["name"],
                             "reason": f"the column at its other end is {r['peer_type']}; citext and text keys "
                                       "cannot be compared"})
        else:
            kept.append({"kind": r["kind"], "name": r["name"]})
    if col["partition_key"]:
        blocking.append({"kind": "partition_key", "name": col["label"]})
    if col["attinhcount"]:
        blocking.append({"kind": "inherited_column", "name": col["label"],
                         "reason": "the column comes from a parent table: convert it there"})
    return kept, blocking


def _blocked_message(label: str, column: str, blocking: list[dict[str, Any]]) -> str:
    names = "; ".join(f"{b['kind'].replace('_', ' ')} {b['name']}" for b in blocking)
    return f"column {column!r} of {label} cannot become citext while these depend on it: {names}"


@tool(group="citext", effect=Effect.ADMIN, extensions=("citext",))
async def citext_convert_column(ctx: ToolContext, args: ConvertColumnIn) -> dict[str, Any]:
    """Convert a text or varchar column to citext, keeping its indexes and constraints.

    Its indexes, constraints and defaults keep working: PostgreSQL rebuilds the column's indexes and constraints in the
    same transaction; the result lists them with their validity. Views, materialized views, rules, policies, trigger
    conditions and generated columns that use the column are not recreated: the call refuses and names every one of
    them, and nothing changes (drop them, convert, then create them again). So does a foreign key whose other end is not
    citext, and a unique index whose values differ only by case (PostgreSQL names the duplicate).
    """
    col = await _column(ctx, args.schema_name, args.table_name, args.column)
    label = col["label"]
    if col["relkind"] not in ("r", "p"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{label} is not a table")
    if col["typname"] == "citext":
        return {"table": args.table_name, "schema": args.schema_name, "column": args.column, "converted": False,
                "from_type": col["type"], "to_type": col["type"], "note": "the column is citext already"}
    if col["typname"] not in _CONVERTIBLE:
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {args.column!r} of {label} is {col['type']}; only text "
                        "and varchar columns are converted", details={"type": col["type"]})
    kept, blocking = await _dependents(ctx, col)
    if blocking:
        raise ToolError(ErrorCode.CONFLICT, _blocked_message(label, args.column, blocking),
                        hint="drop or change these objects first, convert, then recreate them; nothing was changed",
                        details={"blocking": blocking})
    await ctx.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
        args.ident, sql.Identifier(args.column), await _citext_type(ctx)))
    indexes = await ctx.fetch(
        "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition, x.indisunique AS is_unique, "
        "x.indisvalid AND x.indisready AS is_valid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s AND (%s = ANY (x.indkey::int2[]) OR EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = x.indexrelid AND d.refobjid = x.indrelid "
        "AND d.refobjsubid = %s)) ORDER BY i.relname", (col["oid"], col["attnum"], col["attnum"]))
    invalid = [i["name"] for i in indexes if not i["is_valid"]]
    if invalid:
        raise ToolError(ErrorCode.CONFLICT, f"index(es) {', '.join(invalid)} are not valid after the conversion; "
                        "nothing was changed")
    notes = []
    if col["typname"] == "varchar" and col["type"] != "character varying":
        notes.append(f"the length limit of {col['type']} is gone: citext has none (add a CHECK on length() "
                     "to keep it)")
    return {"table": args.table_name, "schema": args.schema_name, "column": args.column, "converted": True,
            "from_type": col["type"], "to_type": "citext", "indexes": indexes,
            "kept": [k for k in kept if k["kind"] != "index"], "notes": notes}


class ListColumnsIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = limit_field(1000)


@tool(group="citext", effect=Effect.READ)
async def citext_list_columns(ctx: ToolContext, args: ListColumnsIn) -> dict[str, Any]:
    """List the citext columns of tables, views and materialized views.

    A column of a domain over citext or of an array of it counts too. Reads the catalog only, so it works without the
    extension (and then finds none). Partitions are left out: their partitioned table is listed.
    """
    rows = await ctx.fetch(load_query("citext_list_columns"), {
        "schema": args.schema_, "system": SYSTEM_SCHEMAS, "limit": args.limit})
    total = rows[0]["total"] if rows else 0
    for r in rows:
        del r["total"]
    version = await ctx.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'citext'")
    return {"columns": rows, "count": len(rows), "total": total, "truncated": total > len(rows),
            "extension_installed": version is not None, "extension_version": version}


def _lower_index(column: str, definitions: list[str]) -> str | None:
    """The expression index on lower(column) or upper(column), if any: the application compares ignoring case."""
    quoted = '"' + column.replace('"', '""') + '"'
    names = "|".join(re.escape(n) for n in {column, quoted})
    pattern = re.compile(rf"\b(lower|upper)\(\(?({names})\)?(::text)?\)")
    return next((d for d in definitions if pattern.search(d)), None)


async def _evidence(ctx: ToolContext, col: dict[str, Any], sample_size: int) -> dict[str, Any]:
    """How a column's values and indexes hint at case-insensitive use, from at most sample_size values."""
    ident = sql.Identifier(col["column"])
    query = sql.SQL(
        "SELECT count(*) AS sampled, count(DISTINCT v) AS distinct_values, "
        "count(DISTINCT lower(v)) AS distinct_lower, count(*) FILTER (WHERE v <> lower(v)) AS mixed_case "
        "FROM (SELECT {col}::text AS v FROM {table} WHERE {col} IS NOT NULL LIMIT {n}) s").format(
        col=ident, table=sql.Identifier(col["schema"], col["table"]), n=sql.Literal(sample_size))
    rows, why = await optional(ctx, "citext_sample", query)
    reasons: list[str] = []
    score = 0
    evidence: dict[str, Any] = {}
    hint = _NAME_HINT.search(col["column"].lower())
    if hint:
        score += 2
        reasons.append(f"the name suggests values people type in any case ({hint.group(0).strip('_')})")
    lower_index = _lower_index(col["column"], col["expression_indexes"])
    if lower_index:
        score += 3
        reasons.append("an index on lower()/upper() of it: queries already compare it ignoring case")
    evidence["case_insensitive_index"] = lower_index
    if rows is None:
        evidence["sample_error"] = why
    else:
        s = rows[0]
        variants = s["distinct_values"] - s["distinct_lower"]
        evidence.update(sampled=s["sampled"], distinct_values=s["distinct_values"], case_variant_values=variants,
                        case_variant_share=round(variants / s["distinct_values"], 4) if s["distinct_values"] else 0,
                        mixed_case_share=round(s["mixed_case"] / s["sampled"], 4) if s["sampled"] else 0)
        if variants:
            score += 3
            reasons.append(f"{variants} of {s['distinct_values']} distinct sampled values differ from another "
                           "only by case")
        elif hint and s["mixed_case"]:
            score += 1
            reasons.append(f"{s['mixed_case']} of {s['sampled']} sampled values have capital letters")
    confidence = "high" if score >= 4 else "medium" if score >= 3 else "low" if score >= 2 else None
    return {"score": score, "confidence": confidence, "reasons": reasons, "evidence": evidence}


async def _text_columns(ctx: ToolContext, schema: str | None, table: str | None,
                        limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = await ctx.fetch(load_query("citext_text_columns"), {
        "schema": schema, "table": table, "system": SYSTEM_SCHEMAS, "limit": limit})
    total = rows[0]["total"] if rows else 0
    return rows, total


class AnalyzeCandidatesIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    table: str | None = Field(None, min_length=1, max_length=IDENT_MAX, description="Only this table")
    sample_size: int = Field(1000, ge=10, le=100_000)
    max_columns: int = Field(200, ge=1, le=2000)
    limit: int = limit_field(50, 1000)


@tool(group="citext", effect=Effect.READ)
async def citext_analyze_candidates(ctx: ToolContext, args: AnalyzeCandidatesIn) -> dict[str, Any]:
    """Find text columns used case-insensitively (emails, usernames, ...), with the evidence.

    Evidence per column: a name that suggests it, an index on lower() or upper() of it, and from a bounded
    sample of its values the share of distinct values that differ from another only by case, and the share
    with capital letters. Confidence is high, medium or low; columns with no evidence are left out.
    Needs no extension.

    Arguments: sampleSize: non-null values read per column, at most; maxColumns: text columns examined, at most
    (truncated says when there were more).
    """
    columns, total = await _text_columns(ctx, args.schema_, args.table, args.max_columns)
    candidates = []
    for col in columns:
        found = await _evidence(ctx, col, args.sample_size)
        if found["confidence"] is None:
            continue
        candidates.append({"schema": col["schema"], "table": col["table"], "column": col["column"],
                           "type": col["type"], "unique": col["unique_indexed"], **found})
    candidates.sort(key=lambda c: (-c["score"], c["schema"], c["table"], c["column"]))
    shown = candidates[:args.limit]
    return {"candidates": shown, "count": len(shown), "columns_examined": len(columns), "text_columns": total,
            "truncated": total > len(columns) or len(candidates) > len(shown), "sample_size": args.sample_size}


class SchemaAdvisorIn(TableRef):
    sample_size: int = Field(1000, ge=10, le=100_000)


@tool(group="citext", effect=Effect.READ)
async def citext_schema_advisor(ctx: ToolContext, args: SchemaAdvisorIn) -> dict[str, Any]:
    """Which text columns of one table should become citext, and what stands in the way.

    Column by column, recommendation: convert (strong evidence), consider, keep, or already_citext. blockers names the
    views, policies, foreign keys ... that pg_citext_convert_column would refuse over; warnings say when a
    unique index would reject values that differ only by case. sampleSize: non-null values read per column, at
    most.
    """
    schema, name = args.schema_name, args.table_name
    rel = await ctx.fetchone("SELECT c.oid, c.relkind::text AS kind FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                             (schema, name))
    if rel is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{name}" does not exist',
                        hint="pg_list_tables lists the tables")
    kind = rel["kind"]
    if kind not in ("r", "p", "m"):
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{name}" is not a table')
    citext_cols = await ctx.fetch(
        "SELECT a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = %s AND a.attnum > 0 "
        "AND NOT a.attisdropped AND t.typname = 'citext' ORDER BY a.attnum", (rel["oid"],))
    columns, _ = await _text_columns(ctx, schema, name, 1600)
    advice = [{"column": c["column"], "type": c["type"], "recommendation": "already_citext", "reasons": [],
               "blockers": [], "warnings": []} for c in citext_cols]
    for col in columns:
        found = await _evidence(ctx, col, args.sample_size)
        recommendation = {"high": "convert", "medium": "convert", "low": "consider", None: "keep"}[found["confidence"]]
        item: dict[str, Any] = {"column": col["column"], "type": col["type"], "recommendation": recommendation,
                                "score": found["score"], "reasons": found["reasons"], "evidence": found["evidence"],
                                "blockers": [], "warnings": []}
        if recommendation != "keep":
            info = await _column(ctx, schema, name, col["column"])
            item["blockers"] = (await _dependents(ctx, info))[1] if kind != "m" else [
                {"kind": "materialized_view", "name": f"{schema}.{name}"}]
            if col["base"] not in _CONVERTIBLE:
                item["warnings"].append(f"{col['type']} is converted only from text or varchar: change it to text "
                                        "first")
            if col["unique_indexed"] and found["evidence"].get("case_variant_values"):
                item["warnings"].append("a unique index covers it and some values differ only by case: the "
                                        "conversion fails until those duplicates are merged")
        advice.append(item)
    order = {"convert": 0, "consider": 1, "keep": 2, "already_citext": 3}
    advice.sort(key=lambda a: (order[a["recommendation"]], -a.get("score", 0), a["column"]))
    installed = await ctx.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citext')")
    summary = {k: sum(1 for a in advice if a["recommendation"] == k) for k in order}
    steps = [f"pg_citext_convert_column {{table: {name!r}, schema: {schema!r}, column: {a['column']!r}}}"
             for a in advice if a["recommendation"] == "convert" and not a["blockers"]]
    if steps and not installed:
        steps.insert(0, "pg_citext_create_extension")
    return {"table": name, "schema": schema, "extension_installed": installed, "summary": summary,
            "columns": advice, "next_steps": steps}


class CompareIn(ToolInput):
    value1: str = Field(max_length=100_000, description="First value")
    value2: str = Field(max_length=100_000, description="Second value")


@tool(group="citext", effect=Effect.READ, extensions=("citext",), aliases=("citextCompare",))
async def citext_compare(ctx: ToolContext, args: CompareIn) -> dict[str, Any]:
    """Compare two values as citext: equal ignoring case, and their order (-1, 0, 1).

    case_sensitive_equal says whether they are equal as plain text too.
    """
    t = await _citext_type(ctx)
    schema = sql.Identifier(await extension_schema(ctx, "citext"))
    row = await ctx.fetchone(sql.SQL(
        "SELECT a OPERATOR({s}.=) b AS equal, CASE WHEN a OPERATOR({s}.<) b THEN -1 WHEN a OPERATOR({s}.>) b "
        "THEN 1 ELSE 0 END AS comparison, a::text = b::text AS case_sensitive_equal, "
        "lower(a::text) AS lower1, lower(b::text) AS lower2 FROM (SELECT %s::{t} AS a, %s::{t} AS b) v").format(
        s=schema, t=t), (args.value1, args.value2))
    assert row is not None
    return {"value1": args.value1, "value2": args.value2, **row}


class SearchIn(TableRef):
    column: str = column_field("text or citext column")
    value: str = Field(max_length=100_000, description="Value to find, in any case")
    return_columns: list[ColumnName] | None = return_columns_field()
    limit: int = limit_field(100)


@tool(group="citext", effect=Effect.READ, aliases=("citextSearch",))
async def citext_search(ctx: ToolContext, args: SearchIn) -> dict[str, Any]:
    """Rows whose column equals a value, ignoring case.

    Alice@Example.com is found for alice@example.com. A citext column is compared with citext's = (its indexes apply); a
    text column with lower() on both sides (an index on lower(column) applies), so no extension is needed for it.
    """
    table = await table_info(ctx, args)
    col = table.text(args.column)
    if col.base == "citext":
        condition = sql.SQL("{} {} %(value)s::{}").format(
            col.of(), await _citext_eq(ctx), await _citext_type(ctx))
        method = "citext ="
    else:
        condition = sql.SQL("lower({}) = lower(%(value)s)").format(col.of())
        method = "lower() ="
    query = sql.SQL("SELECT {} FROM {} AS t WHERE {}").format(
        select_list(args.return_columns, table), table.ident, condition)
    out = await fetch_limited(ctx, query, {"value": args.value}, args.limit)
    return {**out, "column": args.column, "match": method}
