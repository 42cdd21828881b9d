"""Validate JSON bodies against the official Enode OpenAPI 3.1 spec (API version 2024-10-01).

The spec is under a commercial licence, so it is never copied into this repository: it is
loaded at runtime from ``shared/specs/enode/`` next to the repo (see ``SPEC_PATH``), or from
the file named by the ``CAR2MQTT_ENODE_SPEC`` environment variable.

The spec composes schemas with ``allOf`` where every part sets ``additionalProperties: false``
(``Vehicle`` + a part adding ``location``, for example). Read as strict JSON Schema no instance
satisfies both parts, so before validating, ``$ref`` targets inside ``allOf`` are inlined and the
parts are merged the way code generators read them: union of ``properties`` and ``required``,
``additionalProperties: false`` kept if any part had it, ``type`` and ``enum`` intersected,
annotations (``description``, ``example``, ...) from the first part that has them. ``anyOf``
stays ``anyOf``. Other ``$ref``s become references into a ``$defs`` block that holds every
normalised component schema, so recursive references would still work.

Formats ``date-time`` (RFC 3339, offset required), ``uuid`` and ``uri`` are asserted.

Why not openapi-core (0.23.1, with openapi-schema-validator 0.8.1; evaluated for issue 10):
it reads ``allOf`` strictly, as JSON Schema says, so on the raw spec it refused 330 of the 391
valid answers and 17 of the 22 valid webhook events that the simulator tests produce (see
``test_a_strict_reading_of_allof_refuses_a_valid_vehicle``), and has no way to merge ``allOf``.
Even given the spec already normalised here, it still refused 78 valid answers: every
``204`` (the spec writes them with ``"content": {}``, which it reads as "a body is required"),
every error whose status the spec leaves undocumented (401, 429, 500, 503...), and
``application/problem+json`` errors where the spec names ``application/json``. It also let
through what this module refuses: a bare documented ``404`` with a broken Problem body, a
``format: uri`` that is no URI (not checked without the rfc3987 package), and a body sent to
an operation that takes none. Its messages print the whole body with no JSON path, and an
``anyOf`` failure says only "not valid under any of the given schemas". It was also about 2x
slower on the same 497 checks (1.2-2.0 s against 0.65-0.96 s), plus 1.9 s to validate the
spec at load. So only path matching and status lookup (about 80 lines) could have gone, for
14 new packages.
"""

from __future__ import annotations

import functools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

__all__ = ["ENV_VAR", "SPEC_PATH", "EnodeSpec", "SpecError"]

ENV_VAR: Final = "CAR2MQTT_ENODE_SPEC"
SPEC_PATH: Final[Path] = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "specs"
    / "enode"
    / "enode-openapi-2024-10-01.json"
)

_SCHEMA_REF_PREFIX: Final = "#/components/schemas/"
_PROBLEM_REF: Final = _SCHEMA_REF_PREFIX + "Problem"
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_COMBINATORS: Final = ("anyOf", "oneOf", "not", "if", "then", "else")
# Keywords that only annotate: when parts disagree, the first part's value is kept.
_ANNOTATIONS: Final = frozenset(
    {"description", "title", "example", "examples", "default", "deprecated", "readOnly"}
)
_LOWER_BOUNDS: Final = frozenset(
    {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"}
)
_UPPER_BOUNDS: Final = frozenset(
    {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"}
)
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_ABSOLUTE_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", re.ASCII)

Schema = dict[str, Any]


class SpecError(AssertionError):
    """A body does not match the Enode spec, or the spec has no matching operation."""


# --------------------------------------------------------------------------- formats


def _is_date_time(instance: object) -> bool:
    """RFC 3339 ``date-time``: full date, time with seconds, and a ``Z`` or numeric offset."""
    if not isinstance(instance, str):
        return True
    if not _RFC3339.fullmatch(instance):
        return False
    text = instance[:-1] + "+00:00" if instance[-1] in "Zz" else instance
    try:
        datetime.fromisoformat(text[:10] + "T" + text[11:])
    except ValueError:
        return False
    return True


def _is_uuid(instance: object) -> bool:
    """Canonical hyphenated UUID (``uuid.UUID`` alone also accepts braces, URNs and no hyphens)."""
    if not isinstance(instance, str):
        return True
    try:
        return str(uuid.UUID(instance)) == instance.lower()
    except ValueError:
        return False


def _is_uri(instance: object) -> bool:
    """Absolute URI (RFC 3986): a scheme, a colon, then no whitespace."""
    if not isinstance(instance, str):
        return True
    return _ABSOLUTE_URI.fullmatch(instance) is not None


def _format_checker() -> FormatChecker:
    checker = FormatChecker()  # per-instance copy: the class-wide registry is left alone
    checks: dict[str, Callable[[object], bool]] = {
        "date-time": _is_date_time,
        "uuid": _is_uuid,
        "uri": _is_uri,
    }
    for name, func in checks.items():
        checker.checks(name)(func)
    return checker


_FORMAT_CHECKER: Final = _format_checker()


# --------------------------------------------------------------------------- normalising


def _def_ref(name: str) -> str:
    return "#/$defs/" + name.replace("~", "~0").replace("/", "~1")


def _types(value: Any) -> list[str]:
    types = [value] if isinstance(value, str) else list(value)
    if "number" in types and "integer" not in types:
        types.append("integer")  # every integer is a number
    return types


def _merge_types(a: Any, b: Any, where: str) -> Any:
    """Intersect two ``type`` values, except that ``null`` allowed by either part survives.

    The spec writes nullable references as ``allOf: [$ref, {type: [T, null]}]`` (its own
    examples then carry ``null``), so a strict intersection would forbid what it means to allow.
    """
    right = set(_types(b))
    nullable = "null" in right or "null" in _types(a)
    merged = [t for t in _types(a) if t in right]
    if nullable and "null" not in merged and merged:
        merged.append("null")
    if "number" in merged:
        merged.remove("integer")
    if not merged:
        msg = f"allOf at {where}: types {a!r} and {b!r} have no value in common"
        raise SpecError(msg)
    return merged[0] if len(merged) == 1 else merged


class _Normaliser:
    """Turn spec schemas into plain JSON Schema 2020-12 with every ``allOf`` merged."""

    def __init__(self, components: Mapping[str, Any]) -> None:
        self._components = components
        self._done: dict[str, Schema] = {}
        self._in_progress: list[str] = []

    def defs(self) -> dict[str, Schema]:
        for name in self._components:
            self.component(name)
        return self._done

    def component(self, name: str) -> Schema:
        """Normalised schema of ``#/components/schemas/<name>``, cached by name."""
        if name in self._done:
            return self._done[name]
        if name not in self._components:
            msg = f"$ref to unknown schema {name!r}"
            raise SpecError(msg)
        if name in self._in_progress:
            chain = " -> ".join([*self._in_progress, name])
            msg = f"allOf needs to inline a schema that contains itself: {chain}"
            raise SpecError(msg)
        self._in_progress.append(name)
        try:
            result = self.normalise(self._components[name], f"components/schemas/{name}")
        finally:
            self._in_progress.pop()
        if not isinstance(result, dict):
            msg = f"components/schemas/{name} is not an object schema: {result!r}"
            raise SpecError(msg)
        self._done[name] = result
        return result

    def normalise(self, node: Any, where: str) -> Any:
        """Copy ``node`` with ``$ref``s pointing into ``$defs`` and every ``allOf`` merged."""
        if isinstance(node, list):
            return [self.normalise(item, f"{where}/{i}") for i, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith(_SCHEMA_REF_PREFIX):
                msg = f"unsupported $ref {ref!r} at {where}"
                raise SpecError(msg)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings:  # OpenAPI 3.1 allows keywords next to $ref: same as allOf
                return self.normalise({"allOf": [{"$ref": ref}, siblings]}, where)
            name = ref.removeprefix(_SCHEMA_REF_PREFIX)
            if name not in self._components:
                msg = f"$ref to unknown schema {name!r} at {where}"
                raise SpecError(msg)
            return {"$ref": _def_ref(name)}
        if "allOf" in node:
            parts = [{k: v for k, v in node.items() if k != "allOf"}, *node["allOf"]]
            return self._merge(
                [self._expand(self.normalise(p, f"{where}/allOf")) for p in parts], where
            )
        out: Schema = {}
        for key, value in node.items():
            if key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
                out[key] = {k: self.normalise(v, f"{where}/{key}/{k}") for k, v in value.items()}
            elif key in _ANNOTATIONS or key in ("enum", "const") or key.startswith("x-"):
                out[key] = value
            else:
                out[key] = self.normalise(value, f"{where}/{key}")
        return out

    def _expand(self, schema: Any) -> Schema:
        """Replace the top-level ``$ref`` of a normalised schema by the schema it names."""
        if schema is True:
            return {}
        if not isinstance(schema, dict):
            msg = f"cannot merge the non-object schema {schema!r}"
            raise SpecError(msg)
        expanded: Schema = schema
        while set(expanded) == {"$ref"}:
            ref: str = expanded["$ref"]
            name = ref.removeprefix("#/$defs/").replace("~1", "/").replace("~0", "~")
            expanded = self.component(name)
        return expanded

    def _merge(self, parts: Iterable[Schema], where: str) -> Schema:
        out: Schema = {}
        for part in parts:
            out = self._merge_two(out, part, where)
        return out

    def _merge_two(self, a: Schema, b: Schema, where: str) -> Schema:
        out = dict(a)
        for key, value in b.items():
            if key not in out:
                out[key] = value
            elif key in _ANNOTATIONS or key.startswith("x-") or out[key] == value:
                continue
            elif key == "type":
                out[key] = _merge_types(out[key], value, where)
            elif key == "properties":
                merged = dict(out[key])
                for prop, schema in value.items():
                    if prop in merged:
                        merged[prop] = self._merge(
                            [self._expand(merged[prop]), self._expand(schema)],
                            f"{where}/properties/{prop}",
                        )
                    else:
                        merged[prop] = schema
                out[key] = merged
            elif key == "required":
                out[key] = [*out[key], *(r for r in value if r not in out[key])]
            elif key == "additionalProperties":
                if out[key] is False or value is False:
                    out[key] = False
                elif out[key] is True:
                    out[key] = value
                elif value is not True:
                    out[key] = self._merge([self._expand(out[key]), self._expand(value)], where)
            elif key == "items":
                out[key] = self._merge(
                    [self._expand(out[key]), self._expand(value)], f"{where}/items"
                )
            elif key == "enum":
                out[key] = [v for v in out[key] if v in value]
                if not out[key]:
                    msg = f"allOf at {where}: enums {a['enum']!r} and {value!r} are disjoint"
                    raise SpecError(msg)
            elif key in _LOWER_BOUNDS:
                out[key] = max(out[key], value)
            elif key in _UPPER_BOUNDS:
                out[key] = min(out[key], value)
            else:
                msg = f"allOf at {where}: cannot merge {key!r}: {out[key]!r} vs {value!r}"
                raise SpecError(msg)
        structural = {k for k in out if k not in _ANNOTATIONS and not k.startswith("x-")}
        combinators = structural.intersection(_COMBINATORS)
        if combinators and structural - combinators:
            # e.g. anyOf in one part plus properties in another would need the other keywords
            # distributed into every branch; the 2024-10-01 spec never does this.
            msg = f"allOf at {where}: cannot merge {sorted(combinators)} with {sorted(structural)}"
            raise SpecError(msg)
        return out


# --------------------------------------------------------------------------- the spec


def _is_empty(body: Any) -> bool:
    return body is None or body in ("", b"")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_media_type(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _json_schema(content: Mapping[str, Any] | None) -> Any:
    """Return the raw schema of the first JSON media type in an OpenAPI ``content`` map, or None."""
    for media_type, media in (content or {}).items():
        if _is_json_media_type(_media_type(media_type)) and "schema" in media:
            return media["schema"]
    return None


def _format_errors(errors: Iterable[ValidationError], indent: str = "  ") -> list[str]:
    """One line per error: its JSON path and message; anyOf/oneOf failures list each branch."""
    lines: list[str] = []
    for error in sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        if not error.context:
            lines.append(f"{indent}{error.json_path}: {error.message}")
            continue
        # anyOf / oneOf: the message repeats the whole instance; say why each branch failed.
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
        lines.append(f"{indent}{error.json_path}: matches none of the {error.validator} branches")
        for index, subs in sorted(branches.items()):
            branch = error.validator_value[index]
            title = branch.get("title") or str(branch.get("$ref", "")).rsplit("/", 1)[-1]
            lines.append(f"{indent}  {error.validator}[{index}] {title}".rstrip())
            lines.extend(_format_errors(subs, indent + "    "))
    return lines


def _null_in_nullable_enums(node: Any) -> None:
    """Let ``type: [T, "null"]`` with an ``enum`` take null, as the type says.

    The plan's ``finalState`` and ``failureCondition`` are written so: their enums leave null
    out, so read strictly no running plan (not ended, not failed) would be valid. Like the
    ``allOf`` nullable idiom above, the type's null is taken to be meant.
    """
    if isinstance(node, list):
        for item in node:
            _null_in_nullable_enums(item)
    elif isinstance(node, dict):
        types, enum = node.get("type"), node.get("enum")
        nullable = isinstance(types, list) and "null" in types
        if nullable and isinstance(enum, list) and None not in enum:
            node["enum"] = [*enum, None]  # a new list: the raw spec's is shared
        for value in node.values():
            _null_in_nullable_enums(value)


class EnodeSpec:
    """The Enode OpenAPI spec, with ``allOf`` merged, ready to validate bodies."""

    def __init__(self, raw: Mapping[str, Any], path: Path) -> None:
        """Normalise every component schema of ``raw`` (the parsed spec file at ``path``)."""
        self.path = path
        self.raw = raw
        self._normaliser = _Normaliser(raw.get("components", {}).get("schemas", {}))
        self._defs = self._normaliser.defs()
        _null_in_nullable_enums(self._defs)
        self._validators: dict[str, Draft202012Validator] = {}
        # (segments, template) with a None segment for every "{param}".
        self._templates: list[tuple[tuple[str | None, ...], str]] = [
            (
                tuple(
                    None if s.startswith("{") and s.endswith("}") else s
                    for s in template.strip("/").split("/")
                ),
                template,
            )
            for template in raw.get("paths", {})
        ]

    @classmethod
    def load(cls, path: Path | None = None) -> EnodeSpec:
        """Load the spec once per process (per resolved path).

        ``path`` defaults to ``$CAR2MQTT_ENODE_SPEC`` when set, else ``SPEC_PATH``.
        """
        if path is None:
            env = os.environ.get(ENV_VAR)
            path = Path(env) if env else SPEC_PATH
        return _load(path.expanduser().resolve())

    # ------------------------------------------------------------------ lookup

    def match_path(self, method: str, path: str) -> str:
        """Return the path template of the operation serving ``method`` ``path``.

        ``path`` may carry a query string (or be a full URL). Literal segments win over
        ``{param}`` segments, leftmost first: ``/vehicles/actions/x`` is
        ``/vehicles/actions/{actionId}``, not ``/vehicles/{vehicleId}/...``.
        """
        segments = urlsplit(path).path.strip("/").split("/")
        verb = method.lower()
        candidates = [
            (pattern, template)
            for pattern, template in self._templates
            if len(pattern) == len(segments)
            and all(
                seg == want if want is not None else seg != ""
                for seg, want in zip(segments, pattern, strict=True)
            )
        ]
        if not candidates:
            msg = f"{method.upper()} {path}: no path in the Enode spec matches"
            raise SpecError(msg)
        serving = [(p, t) for p, t in candidates if verb in self.raw["paths"][t]]
        if not serving:
            methods = {m for _, t in candidates for m in self.raw["paths"][t]}
            allowed = sorted(m.upper() for m in methods & _HTTP_METHODS)
            msg = (
                f"{method.upper()} {path}: method not in the Enode spec for "
                f"{[t for _, t in candidates]} (allowed: {', '.join(allowed)})"
            )
            raise SpecError(msg)
        # Rank: a literal segment beats a template at the first position where they differ.
        serving.sort(key=lambda pt: tuple(seg is None for seg in pt[0]))
        return serving[0][1]

    def _operation(self, method: str, path_template: str) -> Mapping[str, Any]:
        item = self.raw.get("paths", {}).get(path_template)
        op = item.get(method.lower()) if item is not None else None
        if op is None:
            msg = f"{method.upper()} {path_template}: no such operation in the Enode spec"
            raise SpecError(msg)
        assert isinstance(op, Mapping)
        return op

    def _documented_response(self, op: Mapping[str, Any], status: int) -> Mapping[str, Any] | None:
        responses: Mapping[str, Any] = op.get("responses", {})
        for key in (str(status), f"{status // 100}XX", f"{status // 100}xx", "default"):
            if key in responses:
                response = responses[key]
                assert isinstance(response, Mapping)
                return response
        return None

    def _complete(self, raw_schema: Any, where: str) -> Schema:
        """Normalise a schema that lives outside ``components`` and attach ``$defs``."""
        schema = self._normaliser.normalise(raw_schema, where)
        if isinstance(schema, bool):
            schema = {} if schema else {"not": {}}
        return {**schema, "$defs": self._defs}

    def _problem_schema(self) -> Schema:
        return self._complete({"$ref": _PROBLEM_REF}, "Problem")

    def response_schema(self, method: str, path_template: str, status: int) -> Schema | None:
        """Normalised JSON Schema of a documented response, or None when it has no JSON body.

        Raises SpecError when the operation does not exist or does not document ``status``
        (neither exactly nor via ``4XX``/``default``).
        """
        op = self._operation(method, path_template)
        response = self._documented_response(op, status)
        if response is None:
            msg = f"{method.upper()} {path_template} -> {status}: status not documented"
            raise SpecError(msg)
        raw_schema = _json_schema(response.get("content"))
        if raw_schema is None:
            return None
        return self._complete(raw_schema, f"{method.upper()} {path_template} {status}")

    def request_schema(self, method: str, path_template: str) -> Schema | None:
        """Normalised JSON Schema of an operation's JSON request body, or None if it has none."""
        body = self._operation(method, path_template).get("requestBody")
        raw_schema = _json_schema(body.get("content")) if body else None
        if raw_schema is None:
            return None
        return self._complete(raw_schema, f"{method.upper()} {path_template} request")

    def webhook_schema(self, event: str) -> Schema:
        """Normalised JSON Schema of one webhook event (``spec["webhooks"][event]``)."""
        try:
            body = self.raw["webhooks"][event]["post"]["requestBody"]
        except KeyError:
            known = ", ".join(sorted(self.raw.get("webhooks", {})))
            msg = f"webhook event {event!r} is not in the Enode spec (known: {known})"
            raise SpecError(msg) from None
        raw_schema = _json_schema(body.get("content"))
        if raw_schema is None:
            msg = f"webhook event {event!r} has no JSON schema in the Enode spec"
            raise SpecError(msg)
        return self._complete(raw_schema, f"webhook {event}")

    # ------------------------------------------------------------------ validating

    def _check(self, label: str, schema: Callable[[], Schema | None], body: Any) -> None:
        """Validate ``body`` against ``schema()``, whose validator is cached under ``label``."""
        validator = self._validators.get(label)
        if validator is None:
            resolved = schema()
            if resolved is None:
                msg = f"{label}: the spec documents no JSON schema"
                raise SpecError(msg)
            validator = Draft202012Validator(resolved, format_checker=_FORMAT_CHECKER)
            self._validators[label] = validator
        errors = list(validator.iter_errors(body))
        if errors:
            header = f"{label}: body does not match the Enode spec ({len(errors)} error(s)):"
            raise SpecError("\n".join([header, *_format_errors(errors)]))

    def validate_response(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        content_type: str | None = None,
    ) -> None:
        """Raise SpecError unless ``body`` (decoded JSON, or None) is valid for this response.

        - documented status with a JSON schema: validate against it (and, when given,
          ``content_type`` must be a JSON media type);
        - documented status without content: the body must be empty, except for a status
          >= 400 (e.g. a bare ``"404": {}``), which is validated as a ``Problem``;
        - undocumented status >= 400: validate as ``Problem``; ``content_type``, when given,
          must be ``application/problem+json``;
        - any other undocumented status: SpecError.
        """
        template = self.match_path(method, path)
        label = f"{method.upper()} {template} -> {status}"
        op = self._operation(method, template)
        response = self._documented_response(op, status)
        if response is None and status < 400:
            documented = ", ".join(op.get("responses", {}))
            msg = f"{label}: status not documented (documented: {documented})"
            raise SpecError(msg)
        if response is None:
            if content_type is not None and not _media_type(content_type).startswith(
                "application/problem+json"
            ):
                msg = (
                    f"{label}: an undocumented error must be application/problem+json, "
                    f"got {content_type!r}"
                )
                raise SpecError(msg)
            self._check(label + " (Problem)", self._problem_schema, body)
            return
        raw_schema = _json_schema(response.get("content"))
        if raw_schema is None:
            if status >= 400:
                self._check(label + " (Problem)", self._problem_schema, body)
            elif not _is_empty(body):
                msg = f"{label}: documented without a body, got {body!r:.200}"
                raise SpecError(msg)
            return
        if content_type is not None and not _is_json_media_type(_media_type(content_type)):
            msg = f"{label}: content type {content_type!r} is not JSON"
            raise SpecError(msg)
        self._check(label, lambda: self._complete(raw_schema, label), body)

    def validate_request(self, method: str, path: str, body: Any) -> None:
        """Raise SpecError unless ``body`` (decoded JSON, or None) is a valid request body."""
        template = self.match_path(method, path)
        label = f"{method.upper()} {template} request"
        request_body = self._operation(method, template).get("requestBody")
        if request_body is None:
            if not _is_empty(body):
                msg = f"{label}: the operation takes no body, got {body!r:.200}"
                raise SpecError(msg)
            return
        if _is_empty(body):
            if request_body.get("required", False):
                msg = f"{label}: a body is required"
                raise SpecError(msg)
            return
        self._check(label, lambda: self.request_schema(method, template), body)

    def validate_webhook_event(self, event: Mapping[str, Any]) -> None:
        """Raise SpecError unless ``event`` is a valid webhook event of its ``event`` type."""
        name = event.get("event") if isinstance(event, Mapping) else None
        if not isinstance(name, str):
            msg = f"webhook event has no string 'event' field: {event!r:.200}"
            raise SpecError(msg)
        self._check(f"webhook {name}", lambda: self.webhook_schema(name), event)


@functools.cache
def _load(path: Path) -> EnodeSpec:
    if not path.is_file():
        msg = (
            f"Enode OpenAPI spec not found at {path}. It is not part of this repository "
            f"(commercial licence): put enode-openapi-2024-10-01.json at {SPEC_PATH} "
            f"or point ${ENV_VAR} at it."
        )
        raise FileNotFoundError(msg)
    with path.open(encoding="utf-8") as fh:
        raw = json.load(fh)
    return EnodeSpec(raw, path)
