"""The JSON Schema validator of runtimes.yaml and runtimes.lock.json, and its errors as one
sentence: where in the document, and what was expected there.

Both files are checked against a JSON Schema (runtimes.schema.json, lock.schema.json) by
``validator``: Draft 2020-12 whose ``pattern`` is read as JSON Schema says, in ECMA-262's
dialect (through ``regress``), not Python's ``re``. The difference matters for every pattern
that validates a whole value: Python's ``$`` also matches before a final newline, so
``^[a-z]+$`` would take ``"abc\n"``; ECMA-262's ``$`` is the end of the value.

jsonschema's own messages quote the schema; a maintainer wants the field and what belongs in
it. ``explain`` turns the first error into ``(path, sentence)``; each loader adds its file name
(and, for YAML, the line) in front.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator
from typing import Any, Final, cast

import jsonschema
import regress

Where = tuple[str | int, ...]

# The JSON Schema name of what the loader gave us, so "expected string, got number" reads the
# same for a YAML file and a JSON one.
_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@functools.cache
def _ecma(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")  # JSON Schema's patterns are Unicode-aware ECMA-262


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """The ``pattern`` keyword, matched as ECMA-262 matches: a search, anchored only where the
    pattern says, ``$`` at the very end."""
    if not validator.is_type(instance, "string"):
        return
    try:
        found = _ecma(pattern).find(instance) is not None
    except UnicodeEncodeError:  # a lone surrogate (from a JSON escape) matches no pattern
        found = False
    if not found:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator: Final = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # untyped stub
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


def validator(schema: dict[str, Any]) -> Any:
    """A validator of ``schema`` (Draft 2020-12, its formats checked) whose patterns are read
    in ECMA-262's dialect."""
    return _Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def dotted(where: Where) -> str:
    """``runtimes[3].install.apt[0]``; the empty path is "(top level)". A key holding a control
    character is shown escaped, never obeyed by the terminal."""
    out = ""
    for part in where:
        if isinstance(part, str) and _CONTROL.search(part):
            part = part.encode("unicode_escape").decode()
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _got(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    return kind if value is None or isinstance(value, dict | list) else f"{kind} {short(value)}"


def _allows_null(error: object) -> bool:
    """Whether the field the error is about could also have been null (the error may come from
    one alternative of a oneOf: jsonschema's best_match descends into them)."""
    if not isinstance(error, jsonschema.ValidationError) or error.validator not in (
        "oneOf",
        "anyOf",
    ):
        return False
    alternatives = error.validator_value if isinstance(error.validator_value, list) else []
    return any(isinstance(alt, dict) and alt.get("type") == "null" for alt in alternatives)


def explain(
    error: jsonschema.ValidationError, *, null_hint: str = " (or null)"
) -> tuple[Where, str]:
    """Where the error is and one sentence of what was expected. ``null_hint`` is added when the
    field could also have been null (the lock says why: "when unlocked")."""
    where: Where = tuple(error.absolute_path)
    suffix = null_hint if _allows_null(error.parent) else ""
    if error.validator in ("oneOf", "anyOf"):
        # The alternative whose type matched says what is wrong; none matching is its own case.
        relevant = [e for e in error.context or () if e.validator != "type"]
        required = [e for e in relevant if e.validator == "required"]
        if required and len(required) == len(relevant):
            names = " or ".join(repr(cast(Any, e.validator_value)[0]) for e in required)
            return where, f"missing a required field: expected {names}"
        if relevant:
            suffix = null_hint if _allows_null(error) else ""
            error = max(relevant, key=lambda e: len(e.absolute_path))
            where = tuple(error.absolute_path)
        elif not error.context:  # every alternative matched
            present = error.instance if isinstance(error.instance, dict) else {}
            alternatives = cast(list[dict[str, Any]], error.validator_value)
            keys = [k for alt in alternatives for k in alt.get("required", ()) if k in present]
            both = " and ".join(repr(k) for k in keys) or "several alternatives"
            return where, f"has {both}; expected exactly one of them"
        else:
            kinds = [alt.get("type") for alt in cast(list[dict[str, Any]], error.validator_value)]
            named = " or ".join(str(k) for k in kinds if k) or "another type"
            return where, f"expected {named}, got {_got(error.instance)}"
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        where = (*where, error.instance)  # a key is wrong: point at the key itself
    value: Any = error.instance
    expected: Any = error.validator_value
    schema: dict[str, Any] = dict(error.schema) if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        extra = [k for k in value if k not in allowed]
        key = extra[0] if extra else "?"
        what = f"unknown key {key!r}"
        if allowed:
            what += f"; expected one of: {', '.join(allowed)}"
            close = difflib.get_close_matches(key, allowed, n=1)
            if close:
                what += f" (did you mean {close[0]!r}?)"
        return (*where, key), what
    if error.validator == "required" and isinstance(value, dict):
        missing = [k for k in expected if k not in value]
        return where, f"missing required field {missing[0]!r}"
    if error.validator == "format" and expected == "date":
        return where, f"{short(value)} is not a date; expected YYYY-MM-DD"
    if error.validator == "enum":
        options = ", ".join(map(str, expected))
        return where, f"{short(value)} is not allowed; expected one of: {options}"
    if error.validator == "const":
        return where, f"{short(value)} is not supported; expected {expected!r}"
    if error.validator == "type":
        named = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return where, f"expected {named}{suffix}, got {_got(value)}"
    if error.validator == "pattern":
        described = schema.get("description") or f"of the form {expected}"
        return where, f"{short(value)} is not valid; expected {described}{suffix}"
    if error.validator == "maxLength" and isinstance(value, str):
        described = schema.get("description") or f"at most {expected} characters"
        return where, f"{short(value)} has {len(value)} characters; expected {described}"
    if error.validator == "uniqueItems":
        return where, f"{short(value)} lists an item twice"
    # Anything else: jsonschema's own sentence, kept to one line.
    return where, error.message.splitlines()[0][:200]
