"""invoke(): the one path every call takes, from MCP, REST, the CLI and code mode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from pydantic import ValidationError

from pgcode.core.callctx import CLIENT_ADDR, IN_CODE_EXECUTION
from pgcode.core.context import ToolContext
from pgcode.core.jsonify import to_json
from pgcode.core.registry import ToolInput, ToolSpec
from pgcode.db.sqlpolicy import FUNCTION_VOLATILITY
from pgcode.errors import ErrorCode, ToolError, from_db_error
from pgcode.guard.audit import AuditEntry, bounded
from pgcode.types import Effect, Principal, Scope, TxMode

if TYPE_CHECKING:
    from pgcode.core.runtime import Runtime

log = logging.getLogger(__name__)

CANCELLED = "CANCELLED"
"""The audit log's error code for a call cancelled before it answered: no caller receives it."""


async def invoke(rt: Runtime, name: str, args: Any, principal: Principal, *, read_only: bool = False) -> Any:
    """Run tool `name` for `principal`: scope → validate → statement scope → read-only → requirements →
    rate limit → run (in its transaction, as its scope's role) → audit → result."""
    started = time.perf_counter()
    spec: ToolSpec | None = None
    volatility = FUNCTION_VOLATILITY.set(rt.db.caps.volatility)
    try:
        spec = lookup(rt, name)
        check_scope(spec, spec.scope, principal)
        params = validate(spec, args)
        scope = spec.scope
        if spec.scope_for is not None:
            scope = spec.scope_for(params)
            check_scope(spec, scope, principal, statement=True)
        read_only = read_only or rt.settings.read_only  # a read-only server runs every call read-only
        check_read_only(rt, spec, scope, read_only, params)
        check_requirements(rt, spec)
        await check_rate(rt, spec, principal)
        result = to_json(await run(rt, spec, params, principal, scope=scope, read_only=read_only))
    except ToolError as err:
        audit(rt, name, spec, principal, args, started, err.code.value)
        raise
    except asyncio.CancelledError:  # its caller went away, or a code-mode deadline passed: still one row
        audit(rt, name, spec, principal, args, started, CANCELLED)
        raise
    finally:
        FUNCTION_VOLATILITY.reset(volatility)
    audit(rt, name, spec, principal, args, started, None)
    return result


async def check_rate(rt: Runtime, spec: ToolSpec, principal: Principal) -> None:
    if not IN_CODE_EXECUTION.get():  # calls made from inside code count against the execution
        cls = rate_class(spec)
        if not rt.limiter.hit_in_memory(principal.subject, cls):
            await rt.limiter.hit(principal.subject, cls)


def audit(rt: Runtime, name: str, spec: ToolSpec | None, principal: Principal, args: Any, started: float,
          error_code: str | None) -> None:
    rt.audit.record(AuditEntry(
        principal=principal.subject, tool=str(name), effect=spec.effect if spec else None,
        outcome="error" if error_code else "ok", error_code=error_code,
        duration_ms=(time.perf_counter() - started) * 1000, client_addr=CLIENT_ADDR.get(),
        arguments=bounded(args), group=spec.group if spec else None))


CODE_TOOLS = frozenset({"pg_execute_code", "pg_script_run"})


def rate_class(spec: ToolSpec) -> str:
    """The budget a call draws on: code executions have their own; every other tool its scope's."""
    return "code" if spec.name in CODE_TOOLS else spec.scope.value


def visible_tools(rt: Runtime, principal: Principal) -> Iterator[ToolSpec]:
    """The tools this caller may call on this server (what tools/list and GET /v1/tools show): the ones the
    server exposes (PGCODE_TOOLS) that the caller's scopes allow; a read-only server serves its read tools and
    the code runs that only read."""
    exposed = rt.registry.select(rt.settings.tools)
    for spec in rt.registry:
        if (spec.name in exposed and principal.allows(spec.scope)
                and not (rt.settings.read_only and spec.effect is not Effect.READ and spec.name not in CODE_TOOLS)):
            yield spec


def lookup(rt: Runtime, name: str) -> ToolSpec:
    spec = rt.registry.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no tool named {name!r}",
                        hint="GET /v1/tools (or `pgcode tools`) lists them")
    return spec


def check_scope(spec: ToolSpec, needed: Scope, principal: Principal, *, statement: bool = False) -> None:
    if not principal.allows(needed):
        err = ToolError.forbidden(needed, spec.name)
        if statement:
            err.hint = (f"this statement needs the {needed.value} scope: DDL, a function that is not IMMUTABLE or "
                        "STABLE in a write, or pgcode's own schema or a credentials catalog in a read")
        raise err


def validate(spec: ToolSpec, args: Any) -> ToolInput:
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolError(ErrorCode.INVALID_INPUT, f"arguments of {spec.name} must be a JSON object")
    try:
        return spec.input_model.model_validate(args)
    except ValidationError as exc:
        raise validation_error(spec.name, exc) from None


def validation_error(name: str, exc: ValidationError) -> ToolError:
    # include_input=False: the offending value may be a password; name the field, not the value.
    errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(arguments)", "problem": e["msg"]}
              for e in exc.errors(include_input=False, include_url=False, include_context=False)]
    summary = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
    return ToolError(ErrorCode.INVALID_INPUT, f"invalid arguments for {name}: {summary}",
                     details={"errors": errors})


def check_read_only(rt: Runtime, spec: ToolSpec, scope: Scope, read_only: bool, params: ToolInput) -> None:
    """A read-only call runs only read tools in READ ONLY transactions (EXPLAIN ANALYZE of a write is refused),
    and code runs that are themselves readonly: each of their calls is checked here again, read-only."""
    if not read_only or (spec.effect is Effect.READ and (scope is Scope.READ or spec.tx is TxMode.READ_ONLY)):
        return
    where = "this server is read-only" if rt.settings.read_only else "this call is read-only"
    if spec.name in CODE_TOOLS:
        if getattr(params, "readonly", None) is True:
            return
        raise ToolError(ErrorCode.READ_ONLY, f"{spec.name} without readonly: true may write, and {where}",
                        hint="run it with readonly: true (pgcode run --readonly); its tool calls then only read")
    if spec.effect is Effect.READ:
        message = f"{spec.name}: only reads run here ({where}), and this statement needs the {scope.value} scope"
    else:
        message = f"{spec.name} changes the database and {where}"
    raise ToolError(ErrorCode.READ_ONLY, message,
                    hint="PGCODE_READ_ONLY=true runs only reads" if rt.settings.read_only else None)


def check_requirements(rt: Runtime, spec: ToolSpec) -> None:
    caps = rt.db.caps
    for ext in spec.extensions:
        caps.require_extension(ext, create_tool=_create_tool(rt, ext))
    if spec.min_version is not None:
        caps.require_version(spec.min_version, spec.name)


# The tool that creates each extension a tool may need (TOOLS.md's *_create_extension tools).
_CREATE_TOOLS = {
    "vector": "pg_vector_create_extension", "postgis": "pg_postgis_create_extension",
    "pg_cron": "pg_cron_create_extension", "pg_partman": "pg_partman_create_extension",
    "pg_stat_kcache": "pg_kcache_create_extension", "citext": "pg_citext_create_extension",
    "ltree": "pg_ltree_create_extension", "pgcrypto": "pg_pgcrypto_create_extension",
}


def _create_tool(rt: Runtime, extension: str) -> str | None:
    name = _CREATE_TOOLS.get(extension)
    return name if name and rt.registry.get(name) else None


async def run(rt: Runtime, spec: ToolSpec, params: ToolInput, principal: Principal, *, scope: Scope,
              read_only: bool) -> Any:
    ctx = ToolContext(rt, spec, principal, read_only=read_only, scope=scope)
    token = IN_CODE_EXECUTION.set(True) if rate_class(spec) == "code" else None
    try:
        async with ctx:
            return await spec.func(ctx, params)
    except ToolError as err:
        raise _note_rollback(err, ctx) from None
    except psycopg.Error as exc:
        raise _note_rollback(from_db_error(exc), ctx) from None
    except ValidationError as exc:
        raise validation_error(spec.name, exc) from None
    except Exception:
        log.exception("%s failed", spec.name)
        raise ToolError(ErrorCode.INTERNAL, f"{spec.name} failed unexpectedly; the server log has the details",
                        ) from None
    finally:
        if token is not None:
            IN_CODE_EXECUTION.reset(token)


def _note_rollback(err: ToolError, ctx: ToolContext) -> ToolError:
    if ctx.held_rolled_back and ctx.held is not None:
        err.details["transactionRolledBack"] = True
        err.hint = f"transaction {ctx.held.id} was rolled back and closed; begin a new one"
    return err
