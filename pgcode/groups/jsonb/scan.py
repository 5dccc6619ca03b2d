"""jsonb: sample a jsonb column and report on it (likely secrets and personal data; key and size statistics)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.db.queries import load_query
from pgcode.groups.jsonb._base import Bind, SampleIn, describe_sample, resolve, sample, walk_query
from pgcode.types import Effect

# (kind, category, what is matched, PostgreSQL regular expression). Key rules match member names
# case-insensitively and only flag members holding something (not null, "", {}, [] or a boolean); value
# rules match string (and number) values case-sensitively. credit_card values must also pass the Luhn check.
RULES: tuple[tuple[str, str, str, str], ...] = (
    ("password", "secret", "key", r"pass(word|wd|phrase)|^(pass|pwd)$|[_-](pass|pwd)$"),
    ("token", "secret", "key", r"token|bearer|session[_-]?(id|key)|^auth$|authorization|cookie"),
    ("secret", "secret", "key", r"secret"),
    ("api_key", "secret", "key",
     r"api[_-]?key|access[_-]?key|private[_-]?key|signing[_-]?key|encryption[_-]?key|client[_-]?key|credential"),
    ("personal_id", "personal", "key",
     r"(^|[^a-z])ssn([^a-z]|$)|social[_-]?security|passport|national[_-]?id|tax[_-]?id|driver'?s?[_-]?licen[cs]e"),
    ("birth_date", "personal", "key", r"^dob$|date[_-]?of[_-]?birth|birth[_-]?date|birthday"),
    ("card_number", "personal", "key", r"credit[_-]?card|card[_-]?(number|no|num)$|^cvv$|^cvc$|^pan$|iban"),
    ("email", "personal", "value", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ("credit_card", "personal", "value", r"^[2-6][0-9]([ -]?[0-9]){11,18}$"),
    ("jwt", "secret", "value", r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("aws_access_key", "secret", "value", r"(^|[^A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}([^A-Z0-9]|$)"),
    ("private_key", "secret", "value", r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----"),
    ("github_token", "secret", "value", r"gh[pousr]_[A-Za-z0-9]{36,}"),
    ("slack_token", "secret", "value", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("stripe_key", "secret", "value", r"(sk|rk)_(live|test)_[A-Za-z0-9]{16,}"),
    ("ssn", "personal", "value", r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$"),
)


class SecurityScanIn(SampleIn):
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_security_scan(ctx: ToolContext, args: SecurityScanIn) -> dict[str, Any]:
    """Find likely secrets and personal data in sampled jsonb rows.

    Findings give the row and path; limit caps those listed (the totals count them all). sampleSize caps the rows
    sampled (the result states how many were read and how); seed makes TABLESAMPLE samples of big tables repeatable;
    maxDepth is the deepest nesting level walked.

    Key names (password, token, secret, api_key, ssn, ...) and value patterns (e-mail, Luhn-valid card numbers,
    JWTs, AWS access keys, private keys, GitHub/Slack/Stripe tokens, SSNs). Path elements that look like such
    values are shown as "(redacted)". Heuristics: expect some false positives, and check what a rule misses.
    """
    target, bind = await resolve(ctx, args), Bind()
    s = sample(target, bind, args)
    rules = [{"kind": k, "category": c, "target": t, "pattern": p} for k, c, t, p in RULES]
    query = walk_query(s, bind, args.max_depth) + load_query("jsonb_security_scan").format(
        rules=bind.json(rules), limit=bind(args.limit))
    row = await ctx.fetchone(query, bind.params)
    assert row is not None
    by_category: dict[str, int] = {}
    for kind, category, _, _ in RULES:
        by_category[category] = by_category.get(category, 0) + row["by_kind"].get(kind, 0)
    return {"table": target.name, "column": target.column, "sample": describe_sample(s, row["sampled"]),
            "findings": row["findings"], "total": row["total"], "rowsFlagged": row["rows_flagged"],
            "byKind": row["by_kind"], "byCategory": by_category, "truncated": row["total"] > len(row["findings"]),
            "rules": [{"kind": k, "category": c, "matches": t} for k, c, t, _ in RULES]}


class StatsIn(SampleIn):
    max_keys: int = Field(200, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_stats(ctx: ToolContext, args: StatsIn) -> dict[str, Any]:
    """Sampled jsonb column statistics: key paths, types, depth, sizes.

    maxKeys caps the key paths listed (most frequent first). sampleSize caps the rows sampled (the result states how
    many were read and how); seed makes TABLESAMPLE samples of big tables repeatable; maxDepth is the deepest
    nesting level walked.

    Key paths are JSONPaths ($.a.b, $.tags[*]); frequency is the share of sampled non-null documents having the
    path. Sizes are bytes as stored (compressed when PostgreSQL compressed them).
    """
    target, bind = await resolve(ctx, args), Bind()
    s = sample(target, bind, args)
    query = walk_query(s, bind, args.max_depth) + load_query("jsonb_stats").format(max_keys=bind(args.max_keys))
    row = await ctx.fetchone(query, bind.params)
    assert row is not None
    documents = row["sampled"] - row["null_docs"]
    keys = [{**k, "frequency": round(k["docs"] / documents, 4) if documents else 0.0} for k in row["keys"]]
    return {"table": target.name, "column": target.column, "sample": describe_sample(s, row["sampled"]),
            "documents": {"nonNull": documents, "null": row["null_docs"], "types": row["doc_types"]},
            "sizeBytes": row["sizes"] if documents else None, "depth": row["depth"], "paths": row["path_count"],
            "keys": keys, "truncated": row["path_count"] > len(keys)}

