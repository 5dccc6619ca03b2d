"""Secrets written into SQL or code text: pgcrypto keys, passwords and plaintexts, and PASSWORD '...' literals.

The audit log and the code-mode history keep statements and code, not the secrets inside them. A small
scanner finds each call of a pgcrypto function in the text (SQL, or code that carries SQL in its strings),
splits its arguments at top-level commas, and replaces every string literal in a secret argument; the
arguments that name an algorithm or options are kept. It reads any text, also text that does not parse.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# Per pgcrypto function, the argument positions (0-based) that are NOT secret: algorithm names, options.
_KEEP_ARGS: dict[str, frozenset[int]] = {
    "pgp_sym_encrypt": frozenset({2}), "pgp_sym_encrypt_bytea": frozenset({2}),
    "pgp_sym_decrypt": frozenset({2}), "pgp_sym_decrypt_bytea": frozenset({2}),
    "pgp_pub_encrypt": frozenset({1, 2}), "pgp_pub_encrypt_bytea": frozenset({1, 2}),
    "pgp_pub_decrypt": frozenset({3}), "pgp_pub_decrypt_bytea": frozenset({3}),
    "encrypt": frozenset({2}), "decrypt": frozenset({2}), "encrypt_iv": frozenset({3}), "decrypt_iv": frozenset({3}),
    "hmac": frozenset({2}), "crypt": frozenset(), "digest": frozenset({1}), "armor": frozenset(),
}
_CALL = re.compile(r"\b(" + "|".join(sorted(_KEEP_ARGS, key=len, reverse=True)) + r")\s*\(", re.IGNORECASE)
_PASSWORD_LITERAL = re.compile(r"(\b(?:PASSWORD|IDENTIFIED\s+BY)\s+)(E?'(?:[^']|'')*')", re.IGNORECASE)
_LITERAL = re.compile(r"[Ee]?'(?:[^']|'')*'|\$([A-Za-z_]*)\$.*?\$\1\$", re.DOTALL)
# Code calling the pgcrypto tools: every string in the call's arguments may be a key, password or plaintext.
_JS_CALL = re.compile(r"\bpg\s*\.\s*(?:pgcrypto\s*\.\s*\w+\s*\(|call\s*\(\s*(['\"`])pg_pgcrypto_\w+\1)")
_JS_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"|`(?:[^`\\]|\\.)*`", re.DOTALL)


def _arguments(text: str, start: int) -> list[tuple[int, int]]:
    """(start, end) of each top-level argument of the call whose '(' is just before `start`."""
    spans, depth, i, begin = [], 0, start, start
    while i < len(text):
        ch = text[i]
        if ch in "'$" or (ch in "Ee" and text[i + 1:i + 2] == "'"):
            m = _LITERAL.match(text, i)
            if m:
                i = m.end()
                continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                spans.append((begin, i))
                return spans
            depth -= 1
        elif ch == "," and depth == 0:
            spans.append((begin, i))
            begin = i + 1
        i += 1
    spans.append((begin, len(text)))
    return spans


def _redact_js_calls(text: str) -> str:
    out, last = [], 0
    for call in _JS_CALL.finditer(text):
        if call.start() < last:
            continue
        depth, i = 1, call.end()  # inside the call's parentheses, after its name
        while i < len(text) and depth > 0:
            if text[i] in "'\"`":
                m = _JS_STRING.match(text, i)
                if m:
                    out.append(text[last:i] + f"'{REDACTED}'")
                    last = i = m.end()
                    continue
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
    out.append(text[last:])
    return "".join(out)


def redact_text(text: str) -> str:
    """`text` with the secrets of pgcrypto calls and PASSWORD literals replaced by '[redacted]'."""
    text = _PASSWORD_LITERAL.sub(lambda m: m.group(1) + "'" + REDACTED + "'", text)
    if "pgcrypto" in text:
        text = _redact_js_calls(text)
    if not _CALL.search(text):
        return text
    out, last = [], 0
    for call in _CALL.finditer(text):
        if call.start() < last:
            continue  # inside a call already redacted
        keep = _KEEP_ARGS[call.group(1).lower()]
        for index, (begin, end) in enumerate(_arguments(text, call.end())):
            if index in keep:
                continue
            out.append(text[last:begin])
            out.append(_LITERAL.sub(f"'{REDACTED}'", text[begin:end]))
            last = end
    out.append(text[last:])
    return "".join(out)
