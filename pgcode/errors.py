"""ToolError, its codes, and the one mapping from database errors to them; a leaf every layer may import."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolClosed, PoolTimeout


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    EXTENSION_MISSING = "EXTENSION_MISSING"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    FORBIDDEN = "FORBIDDEN"
    READ_ONLY = "READ_ONLY"
    SQL_ERROR = "SQL_ERROR"
    TIMEOUT = "TIMEOUT"
    RATE_LIMITED = "RATE_LIMITED"
    CONFLICT = "CONFLICT"
    BUSY = "BUSY"
    IN_DOUBT = "IN_DOUBT"
    CONNECTION_FAILED = "CONNECTION_FAILED"
    AUTH_FAILED = "AUTH_FAILED"
    DATABASE_NOT_FOUND = "DATABASE_NOT_FOUND"
    INVALID_DSN = "INVALID_DSN"
    INTERNAL = "INTERNAL"


CONNECTION_CODES = frozenset({ErrorCode.CONNECTION_FAILED, ErrorCode.AUTH_FAILED, ErrorCode.DATABASE_NOT_FOUND,
                              ErrorCode.INVALID_DSN})
"""The database could not be reached with the configured URL: the server's configuration, not the call, is wrong."""


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.READ_ONLY: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.SQL_ERROR: 422,
    ErrorCode.EXTENSION_MISSING: 424,
    ErrorCode.UNSUPPORTED_VERSION: 424,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.IN_DOUBT: 502,
    ErrorCode.BUSY: 503,
    ErrorCode.CONNECTION_FAILED: 503,
    ErrorCode.AUTH_FAILED: 503,
    ErrorCode.DATABASE_NOT_FOUND: 503,
    ErrorCode.INVALID_DSN: 503,
    ErrorCode.TIMEOUT: 504,
}


class ToolError(Exception):
    """A failure a caller can act on: a code, a message naming the object and the fix."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.details = details or {}

    @classmethod
    def forbidden(cls, needed: Any, tool: str | None = None) -> ToolError:
        """FORBIDDEN naming the scope the call needs (the HTTP faces turn it into a 403 challenge)."""
        what = tool or "this call"
        return cls(ErrorCode.FORBIDDEN, f"{what} needs the {needed.value!r} scope",
                   details={"requiredScope": needed.value})

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"ToolError({self.code.value}, {self.message!r})"


# SQLSTATE -> code; anything else falls back by class (first two characters), then SQL_ERROR.
_SQLSTATE_CODES: dict[str, ErrorCode] = {
    "42P01": ErrorCode.NOT_FOUND,  # undefined_table
    "42703": ErrorCode.NOT_FOUND,  # undefined_column
    "42883": ErrorCode.NOT_FOUND,  # undefined_function
    "42704": ErrorCode.NOT_FOUND,  # undefined_object
    "3F000": ErrorCode.NOT_FOUND,  # invalid_schema_name
    "3D000": ErrorCode.NOT_FOUND,  # invalid_catalog_name
    "42P07": ErrorCode.ALREADY_EXISTS,  # duplicate_table
    "42710": ErrorCode.ALREADY_EXISTS,  # duplicate_object
    "42701": ErrorCode.ALREADY_EXISTS,  # duplicate_column
    "42P06": ErrorCode.ALREADY_EXISTS,  # duplicate_schema
    "42723": ErrorCode.ALREADY_EXISTS,  # duplicate_function
    "57014": ErrorCode.TIMEOUT,  # query_canceled (statement_timeout)
    "25006": ErrorCode.READ_ONLY,  # read_only_sql_transaction
    "40001": ErrorCode.CONFLICT,  # serialization_failure
    "40P01": ErrorCode.CONFLICT,  # deadlock_detected
    "55P03": ErrorCode.CONFLICT,  # lock_not_available
    "23502": ErrorCode.INVALID_INPUT,  # not_null_violation
    "23514": ErrorCode.INVALID_INPUT,  # check_violation
    "23505": ErrorCode.CONFLICT,  # unique_violation
    "2BP01": ErrorCode.CONFLICT,  # dependent_objects_still_exist
    "23503": ErrorCode.CONFLICT,  # foreign_key_violation
    "22P02": ErrorCode.INVALID_INPUT,  # invalid_text_representation
    "22023": ErrorCode.INVALID_INPUT,  # invalid_parameter_value
    "42601": ErrorCode.INVALID_INPUT,  # syntax_error
    "42501": ErrorCode.FORBIDDEN,  # insufficient_privilege: the database refused what the call's role may not do
    "57P01": ErrorCode.CONNECTION_FAILED,  # admin_shutdown: the server is stopping or ended this session
    "57P02": ErrorCode.CONNECTION_FAILED,  # crash_shutdown
    "57P03": ErrorCode.CONNECTION_FAILED,  # cannot_connect_now: the server is starting or shutting down
}
_CLASS_CODES: dict[str, ErrorCode] = {
    "08": ErrorCode.CONNECTION_FAILED,  # connection exception
    "22": ErrorCode.INVALID_INPUT,  # data exception
    "23": ErrorCode.CONFLICT,  # integrity constraint violation
    "40": ErrorCode.CONFLICT,  # transaction rollback
    "53": ErrorCode.INTERNAL,  # insufficient resources
    "58": ErrorCode.INTERNAL,  # system error
    "XX": ErrorCode.INTERNAL,
}


def from_db_error(exc: psycopg.Error) -> ToolError:
    """Translate a psycopg error into a ToolError, keyed by SQLSTATE, never by message text."""
    if isinstance(exc, pg_errors.QueryCanceled):
        return ToolError(ErrorCode.TIMEOUT, "the statement was cancelled: it ran past its time limit",
                         hint="narrow the query or raise PGCODE_STATEMENT_TIMEOUT_MS",
                         details={"sqlstate": exc.sqlstate})
    if isinstance(exc, PoolTimeout):
        return busy("every database connection this call may use is taken")
    sqlstate = exc.sqlstate or ""
    if (isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not sqlstate) \
            or sqlstate in _CONNECTION_LOST or sqlstate.startswith("08"):
        # A lost connection (a server restart, a terminated backend): its transaction is gone, try again.
        # libpq's message can carry host names, never pass it through.
        err = ToolError(ErrorCode.CONNECTION_FAILED, "the connection to the database was lost during the call (the "
                        "server restarted or ended the session); its open transaction, if any, was rolled back",
                        hint="try the call again shortly; GET /healthz reports whether the database is reachable",
                        details={"retryAfterSeconds": BUSY_RETRY_AFTER_S})
        if sqlstate:
            err.details["sqlstate"] = sqlstate
        return err
    code = _SQLSTATE_CODES.get(sqlstate) or _CLASS_CODES.get(sqlstate[:2], ErrorCode.SQL_ERROR)
    diag = exc.diag
    details: dict[str, Any] = {"sqlstate": sqlstate} if sqlstate else {}
    if diag.message_detail:
        details["detail"] = diag.message_detail
    if diag.statement_position:
        # A statement sent after its transaction's opening statements, in one message: its own position.
        position = int(diag.statement_position) - getattr(exc, "position_offset", 0)
        details["position"] = position if position > 0 else int(diag.statement_position)
    message = diag.message_primary or str(exc).strip() or type(exc).__name__
    return ToolError(code, message, hint=diag.message_hint, details=details)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is out of reach for now (a lost connection, a restart, no free pooled
    connection), not that it refused the statement: background writers keep their rows and try again. A closed
    pool means the server is stopping, and is no reason to wait."""
    if not isinstance(exc, psycopg.Error) or isinstance(exc, PoolClosed):
        return False
    return from_db_error(exc).code in (ErrorCode.CONNECTION_FAILED, ErrorCode.BUSY)


_CONNECTION_LOST = frozenset({"57P01", "57P02", "57P03"})  # admin_shutdown, crash_shutdown, cannot_connect_now
BUSY_RETRY_AFTER_S = 2


def in_doubt(transaction_id: str | None) -> ToolError:
    """The connection was lost while COMMIT was on its way: the write may or may not have been committed."""
    check = (f"SELECT pg_xact_status('{transaction_id}') says whether it was committed" if transaction_id
             else "check the data before retrying")
    return ToolError(ErrorCode.IN_DOUBT, "the database connection was lost during COMMIT: whether the changes were "
                     "committed is unknown", hint=check,
                     details={"transactionId": transaction_id} if transaction_id else {})


def busy(message: str) -> ToolError:
    """The server is at capacity for this caller: try again shortly (HTTP 503 with Retry-After)."""
    return ToolError(ErrorCode.BUSY, message, hint=f"retry in {BUSY_RETRY_AFTER_S} s, or run fewer calls at once",
                     details={"retryAfterSeconds": BUSY_RETRY_AFTER_S})


# libpq reports a failed connection as text only (no SQLSTATE reaches the client before the session exists), so
# the server's FATAL message is read here. Messages in another lc_messages language fall back to CONNECTION_FAILED.
_AUTH_REASONS = re.compile(
    r"password authentication failed|no password supplied|authentication failed for user|role \".*\" does not "
    r"exist|is not permitted to log in|pg_hba\.conf rejects|no pg_hba\.conf entry|SCRAM|password is missing",
    re.IGNORECASE)
_MISSING_DATABASE = re.compile(r"database \".*\" does not exist", re.IGNORECASE)
_BAD_OPTION = re.compile(r"invalid .*(connection option|value)|missing \"=\" after|unterminated quoted string",
                         re.IGNORECASE)

CONNECTION_HINTS: dict[ErrorCode, str] = {
    ErrorCode.CONNECTION_FAILED: "check that PostgreSQL runs there and accepts connections, or fix the host and port "
                                 "in the database URL (--database-url or PGCODE_DATABASE_URL)",
    ErrorCode.AUTH_FAILED: "check the role and its password in the database URL (--database-url or "
                           "PGCODE_DATABASE_URL), PGPASSWORD or ~/.pgpass, and the server's pg_hba.conf",
    ErrorCode.DATABASE_NOT_FOUND: "create it (createdb NAME) or name an existing database in the database URL "
                                  "(--database-url or PGCODE_DATABASE_URL)",
    ErrorCode.INVALID_DSN: "write it as postgresql://role[:password]@host[:port]/database or as key=value pairs "
                           "such as 'host=localhost dbname=app'",
}


def connection_error(exc: psycopg.Error, url: str) -> ToolError:
    """Why connecting with `url` failed, typed from libpq's reason; the URL's password never appears in it."""
    target = _target(exc, url)
    reason = _scrub(_reason(str(exc)), url)
    where = f"{target['host']}:{target['port']}" if target.get("port") else str(target.get("host") or "localhost")
    details: dict[str, Any] = {k: v for k, v in target.items() if v}
    details["reason"] = reason
    if isinstance(exc, psycopg.ProgrammingError) or _BAD_OPTION.search(reason):
        code, message = ErrorCode.INVALID_DSN, f"the database URL is not valid: {reason}"
        details = {"reason": reason}
    elif _MISSING_DATABASE.search(reason):
        code = ErrorCode.DATABASE_NOT_FOUND
        message = f"database {target.get('database')!r} does not exist on the PostgreSQL server at {where}"
    elif _AUTH_REASONS.search(reason):
        code = ErrorCode.AUTH_FAILED
        message = f"the PostgreSQL server at {where} refused role {target.get('role')!r}: {reason}"
    else:
        code, message = ErrorCode.CONNECTION_FAILED, f"cannot connect to PostgreSQL at {where}: {reason}"
    return ToolError(code, message, hint=CONNECTION_HINTS[code], details=details)


def _target(exc: psycopg.Error, url: str) -> dict[str, str | None]:
    """Host, port, role and database the attempt used: from libpq's connection when it got that far."""
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is not None:
        def text(value: bytes | None) -> str | None:
            return value.decode("utf-8", "replace") if value else None
        return {"host": text(pgconn.host), "port": text(pgconn.port), "role": text(pgconn.user),
                "database": text(pgconn.db)}
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return {}
    return {"host": _str(params.get("host")), "port": _str(params.get("port")), "role": _str(params.get("user")),
            "database": _str(params.get("dbname"))}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _reason(text: str) -> str:
    """libpq's own words for the last attempt: after the final 'failed:', first line, without 'FATAL:'."""
    last = text.rsplit("failed: ", 1)[-1] if "failed: " in text else text
    line = last.strip().splitlines()[0] if last.strip() else "no reason given"
    line = re.sub(r"^(connection is bad: |FATAL:\s+)", "", line.strip())
    return re.sub(r"^FATAL:\s+", "", line).strip()


def _scrub(text: str, url: str) -> str:
    """Drop the URL and its password from a message: libpq quotes a URI it cannot parse."""
    if url and url in text:
        text = text.replace(url, "<the database URL>")
    try:
        password = _str(conninfo_to_dict(url).get("password"))
    except psycopg.Error:  # unparsable: take what a URI would hold between ':' and '@'
        found = re.search(r"://[^:/@]*:([^@/]+)@", url)
        password = found.group(1) if found else None
    if password and password in text:
        text = text.replace(password, "***")
    return text
