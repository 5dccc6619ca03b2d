"""Code mode's tools (group codemode): run code against the pg API, check it, read its history, keep scripts."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from pgcode.codemode import history, scripts
from pgcode.codemode.engine import ExecRequest, engine
from pgcode.codemode.settings import ABSOLUTE_MAX_MEMORY_MB, ABSOLUTE_MAX_TIMEOUT_MS
from pgcode.codemode.validate import static_problems
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Effect, TxMode

_MAX_FIELD = 1_000_000  # far above the 50 KB code limit: larger code gets a clear INVALID_INPUT output
Timeout = Field(30_000, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS)
ToolNames = list[Annotated[str, StringConstraints(min_length=1, max_length=128)]]


class ExecuteCodeIn(ToolInput):
    code: str = Field("", max_length=_MAX_FIELD, description="Async function body; `return` the result")
    readonly: bool = False
    timeout: int = Timeout
    memory_limit: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_MEMORY_MB)
    tools: ToolNames | None = Field(None, max_length=300, description="Only these groups/tools")
    input: Any = Field(None, description="Visible as `input` in the code")


@tool(group="codemode", effect=Effect.ADMIN, tx=TxMode.NONE)
async def execute_code(ctx: ToolContext, args: ExecuteCodeIn) -> dict[str, Any]:
    """Run JS/TS code calling tools as `await pg.<group>.<method>(args)`.

    The code is JavaScript or TypeScript; the result is {success, result, error, metrics, ...}. It runs in an isolated
    QuickJS sandbox (no eval, modules, timers, network, files or environment) and is the body of an async function:
    `return` gives `result`. Tool calls run through the same checks as direct calls, with your scopes; Promise.all runs
    them concurrently. A failed call throws an Error with .code and .message. A failed run is not a tool error:
    `success` is false and `error` has {code, message, line} (codes: MISSING_CODE, INVALID_INPUT, SYNTAX_ERROR,
    RUNTIME_ERROR, TIMEOUT, MEMORY_LIMIT, SECURITY_ERROR, RESULT_TOO_LARGE, READ_ONLY, FORBIDDEN, EXECUTION_FAILED, or
    the code of an uncaught tool error). `metrics` has durationMs, toolCalls, resultBytes, memoryLimitMB and
    peakMemoryMB. pg.help() and pg.<group>.help() describe the API inside the code; pg_codemode_docs outside it.

    Arguments: code: JavaScript or TypeScript, at most 50 KB, e.g. `const t = await pg.core.listTables();
    return t`. readonly: allow only read tools; every call runs in a READ ONLY transaction. timeout: time limit
    in ms (the server may lower it). memoryLimit: JS heap limit in MB (default 128; a request above the
    server's maximum, PGCODE_CODEMODE_MAX_MEMORY_MB, 512 unless configured, is lowered, and metrics says so).
    tools: group names ("core") and/or tool names ("pg_table_stats"); `pg` then holds only those, pg.help()
    lists only those, and any other call fails with FORBIDDEN. It narrows what your scopes and readonly allow,
    never widens it; absent, every tool your scopes allow. input: any JSON value.
    """
    request = ExecRequest(code=args.code, input=args.input, readonly=args.readonly, timeout_ms=args.timeout,
                          memory_mb=args.memory_limit, tools=_tuple(args.tools))
    return await engine(ctx.rt).execute(request, ctx.principal)


def _tuple(names: list[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(names)


class ValidateCodeIn(ToolInput):
    code: str = Field(max_length=_MAX_FIELD, description="Code to check")
    readonly: bool = False


@tool(group="codemode", effect=Effect.READ, tx=TxMode.NONE)
async def validate_code(ctx: ToolContext, args: ValidateCodeIn) -> dict[str, Any]:
    """Check code without running it: syntax, unknown pg methods, forbidden features.

    Syntax errors come with their line. readonly also reports calls of tools that readonly execution refuses.
    The code is compiled, never run, and the check does not take a sandbox worker.
    """
    cm = engine(ctx.rt)
    errors: list[dict[str, Any]] = []
    size = len(args.code.encode("utf-8", "surrogatepass"))
    if not args.code.strip():
        errors.append({"code": "MISSING_CODE", "message": "there is no code", "line": None})
        return {"valid": False, "language": None, "errors": errors, "warnings": [], "toolCalls": []}
    if size > cm.settings.max_code_bytes:
        errors.append({"code": "INVALID_INPUT", "message": f"the code is {size} bytes; code mode takes at most "
                                                           f"{cm.settings.max_code_bytes}", "line": None})
        return {"valid": False, "language": None, "errors": errors, "warnings": [], "toolCalls": []}
    syntax = await cm.check_syntax(args.code)
    if not syntax["ok"]:
        errors.append(syntax["error"])
        return {"valid": False, "language": syntax.get("language"), "errors": errors, "warnings": [],
                "toolCalls": []}
    found, warnings, calls = static_problems(args.code, cm.api, readonly=args.readonly)
    errors += found
    return {"valid": not errors, "language": syntax["language"], "errors": errors, "warnings": warnings,
            "toolCalls": calls}


class CodemodeDocsIn(ToolInput):
    format: Literal["json", "markdown"] = "json"


@tool(group="codemode", effect=Effect.READ, tx=TxMode.NONE)
async def codemode_docs(ctx: ToolContext, args: CodemodeDocsIn) -> dict[str, Any]:
    """The code-mode API: every pg.<group>.<method> with its arguments.

    Plus the globals, limits and error codes; format json (structured) or markdown (to read).
    """
    cm = engine(ctx.rt)
    if args.format == "markdown":
        return {"format": "markdown", "markdown": cm.api.docs_markdown(cm.limits())}
    return cm.api.docs(cm.limits())


# -- execution history -------------------------------------------------------------------------------

class ExecutionListIn(ToolInput):
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000)
    outcome: Literal["success", "error", "timeout"] | None = None
    principal: str | None = Field(None, max_length=200)


@tool(group="codemode", effect=Effect.READ, own_sql=True)
async def execution_list(ctx: ToolContext, args: ExecutionListIn) -> dict[str, Any]:
    """Recent code-mode executions: who, when, how long, outcome, tool calls.

    Newest first; also the error code and the result size. offset pages; outcome and principal filter (reading another
    principal's executions needs the admin scope).
    """
    history.require_history(ctx)
    await engine(ctx.rt).history.flush()
    return await history.list_executions(ctx, history.visible_principal(ctx, args.principal), args.outcome,
                                         args.limit, args.offset)


class ExecutionGetIn(ToolInput):
    id: uuid.UUID = Field(description="executionId from pg_execute_code")


@tool(group="codemode", effect=Effect.READ, own_sql=True)
async def execution_get(ctx: ToolContext, args: ExecutionGetIn) -> dict[str, Any]:
    """One code-mode execution: its code (first 64 KB), outcome and metrics."""
    history.require_history(ctx)
    await engine(ctx.rt).history.flush()
    return await history.get_execution(ctx, args.id, history.visible_principal(ctx, None))


class ExecutionStatsIn(ToolInput):
    hours: int = Field(720, ge=1, le=87_600)
    principal: str | None = Field(None, max_length=200)


@tool(group="codemode", effect=Effect.READ, own_sql=True)
async def execution_stats(ctx: ToolContext, args: ExecutionStatsIn) -> dict[str, Any]:
    """Code-mode statistics per principal: runs, success rate, mean/p95 duration.

    Also timeouts. Over the last `hours` (default 720 = 30 days); principal: only this one.
    """
    history.require_history(ctx)
    await engine(ctx.rt).history.flush()
    return await history.execution_stats(ctx, history.visible_principal(ctx, args.principal), args.hours)


# -- saved scripts -----------------------------------------------------------------------------------

class ScriptRef(ToolInput):
    id: int | None = Field(None, ge=1)
    name: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _one_reference(self) -> ScriptRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give the script's id or its name (one of them)")
        return self


class ScriptSaveIn(ToolInput):
    name: str = Field(max_length=200, description="Letter, then letters/digits/_.-")
    code: str = Field(max_length=_MAX_FIELD, description="JS or TS; `args` holds a run's arguments")
    description: str = Field("", max_length=2000)
    readonly: bool = False
    timeout: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS)
    memory_limit: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_MEMORY_MB)
    tools: ToolNames | None = Field(None, max_length=300)


async def _checked_code(ctx: ToolContext, code: str) -> str:
    """Refuse oversize code and code that does not parse; return its language."""
    scripts.check_code(code, engine(ctx.rt).settings.max_code_bytes)
    syntax = await engine(ctx.rt).check_syntax(code)
    if not syntax["ok"]:
        err = syntax["error"]
        raise ToolError(ErrorCode.INVALID_INPUT, f"the code does not parse: line {err.get('line')}: {err['message']}",
                        details={"error": err})
    return str(syntax["language"])


def _checked_tools(ctx: ToolContext, names: list[str] | None) -> list[str] | None:
    """An allow-list to store: every entry a group or tool of code mode (INVALID_INPUT otherwise)."""
    if names is None:
        return None
    try:
        return list(engine(ctx.rt).api.allowance(names).entries)
    except ValueError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, str(exc)) from None


@tool(group="codemode", effect=Effect.WRITE, own_sql=True)
async def script_save(ctx: ToolContext, args: ScriptSaveIn) -> dict[str, Any]:
    """Save a code-mode script under a name, to run later with pg_script_run.

    name: unique among your scripts. code: at most 50 KB. readonly, timeout (ms), memoryLimit (MB) and tools
    (an allow-list of group and/or tool names; absent: none) are the defaults of its runs, which a run may
    override.
    """
    scripts.require_scripts(ctx)
    scripts.check_name(args.name)
    language = await _checked_code(ctx, args.code)
    return await scripts.save(ctx, ctx.principal.subject, {
        "name": args.name, "description": args.description, "code": args.code, "language": language,
        "readonly": args.readonly, "timeout_ms": args.timeout, "memory_limit_mb": args.memory_limit,
        "tools": _checked_tools(ctx, args.tools)})


class ScriptListIn(ToolInput):
    search: str | None = Field(None, max_length=200)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0)


@tool(group="codemode", effect=Effect.READ, own_sql=True)
async def script_list(ctx: ToolContext, args: ScriptListIn) -> dict[str, Any]:
    """Your saved scripts: id, name, description, run defaults, runs.

    Without their code, by name; search: only names or descriptions containing this; offset pages.
    """
    scripts.require_scripts(ctx)
    return await scripts.list_scripts(ctx, ctx.principal.subject, args.search, args.limit, args.offset)


@tool(group="codemode", effect=Effect.READ, own_sql=True)
async def script_get(ctx: ToolContext, args: ScriptRef) -> dict[str, Any]:
    """One of your saved scripts (by id or name), with code."""
    scripts.require_scripts(ctx)
    return await scripts.get(ctx, ctx.principal.subject, args.id, args.name)


class ScriptUpdateIn(ScriptRef):
    new_name: str | None = Field(None, max_length=200)
    code: str | None = Field(None, max_length=_MAX_FIELD)
    description: str | None = Field(None, max_length=2000)
    readonly: bool | None = None
    timeout: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS)
    memory_limit: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_MEMORY_MB)
    tools: ToolNames | None = Field(None, max_length=300)
    clear: list[Literal["timeout", "memoryLimit", "tools"]] | None = None


@tool(group="codemode", effect=Effect.WRITE, own_sql=True)
async def script_update(ctx: ToolContext, args: ScriptUpdateIn) -> dict[str, Any]:
    """Change a saved script's code, name, description or defaults.

    The script is named by id or name; newName renames it. readonly, timeout (ms), memoryLimit (MB) and tools
    set new run defaults (tools [] allows no tool); clear removes defaults: the server's default time or memory
    limit again, no allow-list.
    """
    scripts.require_scripts(ctx)
    changes: dict[str, Any] = {}
    if args.new_name is not None:
        scripts.check_name(args.new_name)
        changes["name"] = args.new_name
    if args.code is not None:
        changes["language"] = await _checked_code(ctx, args.code)
        changes["code"] = args.code
    for field, column in (("description", "description"), ("readonly", "readonly"), ("timeout", "timeout_ms"),
                          ("memory_limit", "memory_limit_mb")):
        if getattr(args, field) is not None:
            changes[column] = getattr(args, field)
    if args.tools is not None:
        changes["tools"] = _checked_tools(ctx, args.tools)
    for name, column in (("timeout", "timeout_ms"), ("memoryLimit", "memory_limit_mb"), ("tools", "tools")):
        if name in (args.clear or []):
            if column in changes:
                raise ToolError(ErrorCode.INVALID_INPUT, f"{name} is both given and cleared")
            changes[column] = None
    if not changes:
        raise ToolError(ErrorCode.INVALID_INPUT, "nothing to change: give newName, code, description, readonly, "
                                                 "timeout, memoryLimit, tools or clear")
    return await scripts.update(ctx, ctx.principal.subject, args.id, args.name, changes)


@tool(group="codemode", effect=Effect.DESTRUCTIVE, own_sql=True)
async def script_delete(ctx: ToolContext, args: ScriptRef) -> dict[str, Any]:
    """Delete one of your saved scripts (by id or name)."""
    scripts.require_scripts(ctx)
    return await scripts.delete(ctx, ctx.principal.subject, args.id, args.name)


class ScriptRunIn(ScriptRef):
    args: Any = Field(None, description="Visible as `args` in the script")
    input: Any = Field(None, description="Visible as `input` in the script")
    readonly: bool | None = None
    timeout: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS)
    memory_limit: int | None = Field(None, ge=1, le=ABSOLUTE_MAX_MEMORY_MB)
    tools: ToolNames | None = Field(None, max_length=300)


@tool(group="codemode", effect=Effect.ADMIN, tx=TxMode.NONE)
async def script_run(ctx: ToolContext, args: ScriptRunIn) -> dict[str, Any]:
    """Run a saved script (by id or name) with `args`, like pg_execute_code.

    Returns what pg_execute_code returns. args and input are any JSON values. readonly, timeout (ms), memoryLimit (MB)
    and tools override the script's defaults for this run.
    """
    scripts.require_scripts(ctx)
    script = await scripts.load_for_run(ctx.rt.db, ctx.principal.subject, args.id, args.name)
    readonly = script["readonly"] if args.readonly is None else args.readonly
    tools = args.tools if args.tools is not None else script["tools"]
    request = ExecRequest(code=script["code"], input=args.input, args=args.args, readonly=readonly,
                          timeout_ms=args.timeout or script["timeout_ms"],
                          memory_mb=args.memory_limit or script["memory_limit_mb"], tools=_tuple(tools),
                          script_id=script["id"])
    out = await engine(ctx.rt).execute(request, ctx.principal)
    await scripts.count_run(ctx.rt.db, script["id"])
    return {**out, "script": {"id": script["id"], "name": script["name"]}}
