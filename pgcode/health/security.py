"""Health checks on security: superuser logins, CREATE on schema public, SECURITY DEFINER search_path."""

from __future__ import annotations

from pgcode.core.context import ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health._base import CheckResult, Coverage, Thresholds, check, items, result

AREA = "security"

_SUPERUSERS = """
SELECT rolname AS role, rolvaliduntil AS valid_until, rolconnlimit AS connection_limit
FROM pg_roles
WHERE rolsuper AND rolcanlogin AND oid <> 10  -- oid 10 is the bootstrap superuser initdb created
ORDER BY rolname
"""


@check("superuser_logins", AREA, "roles", "catalog")
async def superuser_logins(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Roles that can log in as superuser, other than the bootstrap superuser."""
    rows = await ctx.fetch(_SUPERUSERS)
    names = ", ".join(r["role"] for r in rows[:5])
    return result("superuser_logins", AREA, "warning" if rows else "ok",
                  f"{len(rows)} login roles besides the bootstrap superuser are superusers"
                  + (f" ({names})" if rows else ""), len(rows), 0,
                  "give applications and people roles with only the privileges they need (pg_monitor, "
                  "pg_read_all_stats, object grants); ALTER ROLE ... NOSUPERUSER", items(rows, t))


_PUBLIC_CREATE = """
SELECT n.nspname AS schema, pg_get_userbyid(n.nspowner) AS owner
FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE'
"""


@check("public_schema_create", AREA, "schemas", "catalog")
async def public_schema_create(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Whether every role (PUBLIC) may create objects in schema public (the pre-15 default, CVE-2018-1058)."""
    rows = await ctx.fetch(_PUBLIC_CREATE)
    return result("public_schema_create", AREA, "warning" if rows else "ok",
                  "PUBLIC may CREATE in schema public" if rows else "PUBLIC may not CREATE in schema public",
                  bool(rows), False,
                  "REVOKE CREATE ON SCHEMA public FROM PUBLIC: any role can otherwise plant functions and operators "
                  "that shadow the ones other roles call (the PostgreSQL 15 default)", items(rows, t))




@check("security_definer_search_path", AREA, "functions", "catalog")
async def security_definer_search_path(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """SECURITY DEFINER functions without a fixed search_path: callers can hijack them with their own objects."""
    rows = await ctx.fetch(load_query("health_security_definer"), {"system": SYSTEM_SCHEMAS})
    supers = sum(1 for r in rows if r["owner_is_superuser"])
    names = ", ".join(f"{r['schema']}.{r['function']}" for r in rows[:3])
    return result("security_definer_search_path", AREA,
                  "critical" if supers else "warning" if rows else "ok",
                  f"{len(rows)} SECURITY DEFINER functions without SET search_path ({supers} owned by a superuser)"
                  + (f": {names}" if rows else ""), len(rows), 0,
                  "ALTER FUNCTION ... SET search_path = pg_catalog, <schema> (trusted schemas only, pg_temp last "
                  "or left out), and schema-qualify what the body calls", items(rows, t))
