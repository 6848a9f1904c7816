"""Round-trip property test of every writable field of every resource (issue 16).

For each resource of one version that the published OpenAPI document lets a client write
(PATCH on the item, POST on the collection), and for each property of the write body's schema
(`...Patch`, `...Create`), values are generated from that property's own schema in the
document by hypothesis-jsonschema (a third-party generator, so the test does not share the
server's assumptions), written through the API and read back. Each write must end in one of:

  * 2xx: the response body and a fresh GET of the item carry exactly the value sent, under the
    API's equality (strings, integers, booleans and null exact; `format: decimal` strings and the
    `value` of money objects as Python Decimals; dates and date-times as exact strings);
  * 422 application/problem+json whose `errors` name the field's JSON pointer (`/field`, or a
    pointer inside it) and nothing else;
  * 409 for a POST only when the generated key already exists (checked with a GET first).

Anything else fails. Hypothesis shrinks each failure to a minimal value, reported with the
request, the response and the read-back; after a failure it runs again (--rounds) past the
kinds already found, so one field can report several distinct bugs.

PATCH: every example starts from the same existing row (If-Match is the ETag of a GET made just
before) and is undone right after it is checked, with the ETag of the read-back GET as any
client would; a write after which the row refuses its own fresh ETag (412/428) fails too, and
that row is set aside (written back without If-Match where the resource allows it). On a
resource that requires If-Match such rows cannot be repaired, so today's bugs can use up a small
table: the field then also reports "no usable row left". A 412/428 on the tested write itself
means this script's If-Match handling (or the server's ETag) is wrong.
POST: a base body from an existing row's required fields; the key made unique from a counter
that fits the key's schema (rows from earlier runs are skipped), except when the key itself is
the varied field. Created rows are deleted when the item has a DELETE.

  .venv/bin/python tests/api/support/roundtrip.py --base http://127.0.0.1:8080 --version v1 \\
      --token "$TOKEN" [--examples 100] [--seed N] [--resource jobs ...] [--field name ...]

Prints one summary line per field (and each failure under it) and exits 1 when anything failed
or could not be tested, 0 otherwise. The same document and database give the same values every
run (hypothesis is derandomized unless --seed is given).
"""

from __future__ import annotations

import argparse
import copy
import email.utils
import http.client
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal, InvalidOperation
from typing import Any

import hypothesis
import hypothesis.configuration
import jsonschema
from hypothesis import HealthCheck, Phase, Verbosity, given, settings

# Hypothesis keeps caches in .hypothesis/ of the working directory unless told otherwise: keep
# them out of the repository (examples are not stored: database=None below). hypothesis_jsonschema
# is imported after this (in generator()), as importing it already writes there.
if not os.getenv("HYPOTHESIS_STORAGE_DIRECTORY"):
    hypothesis.configuration.set_hypothesis_home_dir(
        os.path.join(tempfile.gettempdir(), "portico-roundtrip-hypothesis"))


def generator():
    import hypothesis_jsonschema

    return hypothesis_jsonschema

# Keywords hypothesis-jsonschema 0.23 generates from (it supports drafts 4, 6 and 7), and the
# annotations that constrain nothing. Anything else in a body schema is reported: the generator
# would silently ignore it.
GENERATOR_KEYWORDS = {
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "format", "items", "additionalItems",
    "contains", "minItems", "maxItems", "uniqueItems", "properties", "patternProperties",
    "additionalProperties", "required", "minProperties", "maxProperties", "propertyNames",
    "dependencies", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
}
ANNOTATIONS = {
    "title", "default", "examples", "example", "$comment", "readOnly", "writeOnly",
    "deprecated", "$schema", "$id", "contentMediaType", "contentEncoding", "externalDocs",
}
SUBSCHEMA_DICTS = {"properties", "patternProperties"}
SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
SUBSCHEMAS = {"items", "additionalItems", "contains", "additionalProperties", "propertyNames",
              "not", "if", "then", "else"}


def generator_formats() -> set[str]:
    """The string formats hypothesis-jsonschema generates (others it ignores)."""
    generator()
    try:
        from hypothesis_jsonschema._from_schema import STRING_FORMATS
    except ImportError:  # pragma: no cover - a later release may move it
        return set()
    return set(STRING_FORMATS)

MAX_BODY_PRINT = 1500


# --------------------------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str
    body: Any  # parsed JSON, or None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class Exchange:
    """One request and its response, for failure reports."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    response: Response | None = None

    def describe(self) -> str:
        hdrs = "".join(f"  {k}: {v}" for k, v in self.headers.items() if k.lower() == "if-match")
        lines = [f"{self.method} {self.path}{hdrs}"]
        if self.body is not None:
            lines.append("    body: " + clip(json.dumps(self.body, ensure_ascii=False)))
        if self.response is not None:
            r = self.response
            lines.append(f"    -> {r.status} {r.content_type}: {clip(r.text)}")
        return "\n".join(lines)


def visible(text: str) -> str:
    """Text with every unprintable character (controls, separators, ...) shown as an escape."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def clip(text: str) -> str:
    text = visible(text)
    return text if len(text) <= MAX_BODY_PRINT else text[:MAX_BODY_PRINT] + f"... ({len(text)} chars)"


class Client:
    def __init__(self, base: str, token: str | None, timeout: float = 30.0):
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SystemExit(f"--base must be an http(s) URL, got {base!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.requests = 0

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def path_of(self, location: str) -> str:
        """A path (and query) on this server from a Location header, absolute or relative."""
        url = urllib.parse.urljoin(self.base + "/", location)
        parts = urllib.parse.urlsplit(url)
        path = parts.path
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix):]
        return path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Exchange:
        hdrs = {"Accept": "application/json, application/problem+json"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        exchange = Exchange(method, path, {k: v for k, v in hdrs.items() if k != "Authorization"}, body)
        for attempt in range(30):
            # One connection per request: no keep-alive races, and a write is never re-sent.
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=data, headers={**hdrs, "Connection": "close"})
                raw = conn.getresponse()
                payload = raw.read()
                rheaders = {k.lower(): v for k, v in raw.getheaders()}
                status = raw.status
            finally:
                conn.close()
            self.requests += 1
            if status == 429 and attempt < 29:
                time.sleep(retry_after(rheaders.get("retry-after")))
                continue
            text = payload.decode("utf-8", errors="replace")
            parsed = None
            if text:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            exchange.response = Response(status, rheaders, text, parsed)
            return exchange
        raise AssertionError("unreachable")


def retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    try:
        return min(max(float(value), 0.05), 60.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return min(max(when - time.time(), 0.05), 60.0)
    except (TypeError, ValueError):
        return 1.0


# ----------------------------------------------------------------------------------- schemas


class Document:
    def __init__(self, doc: dict):
        self.doc = doc
        self.components = doc.get("components", {})

    def deref(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """The node with every `$ref` to a component replaced by (a copy of) the component."""
        if isinstance(node, list):
            return [self.deref(n, seen) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SystemExit(f"cannot resolve external $ref {ref!r}")
            if ref in seen:
                raise SystemExit(f"recursive $ref {ref!r}: not supported by hypothesis-jsonschema")
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            resolved = self.deref(target, (*seen, ref))
            if rest:  # OpenAPI 3.1 allows siblings of $ref: they apply as well
                return {"allOf": [resolved, self.deref(rest, seen)]}
            return resolved
        return {k: self.deref(v, seen) for k, v in node.items()}


def strip_descriptions(schema: Any) -> Any:
    """The schema without `description` annotations (at schema positions), everything else kept."""
    if isinstance(schema, list):
        return [strip_descriptions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "description":
            continue
        if k in SUBSCHEMA_DICTS and isinstance(v, dict):
            out[k] = {name: strip_descriptions(s) for name, s in v.items()}
        elif k in SUBSCHEMA_LISTS or k in SUBSCHEMAS or k in ("dependencies",):
            out[k] = strip_descriptions(v) if not (k == "dependencies" and isinstance(v, dict)) else {
                name: (strip_descriptions(s) if isinstance(s, dict) else s) for name, s in v.items()}
        else:
            out[k] = v
    return out


def generator_notes(schema: Any, where: str = "") -> list[str]:
    """What hypothesis-jsonschema would not honour in this schema (keywords, formats)."""
    notes: list[str] = []
    if not isinstance(schema, dict):
        return notes
    for k, v in schema.items():
        if k in SUBSCHEMA_DICTS and isinstance(v, dict):
            for name, s in v.items():
                notes += generator_notes(s, f"{where}/{k}/{name}")
        elif k in SUBSCHEMA_LISTS and isinstance(v, list):
            for i, s in enumerate(v):
                notes += generator_notes(s, f"{where}/{k}/{i}")
        elif k in SUBSCHEMAS and isinstance(v, dict):
            notes += generator_notes(v, f"{where}/{k}")
        elif k not in GENERATOR_KEYWORDS and k not in ANNOTATIONS:
            notes.append(f"keyword `{k}` at {where or '/'} is not supported by hypothesis-jsonschema "
                         "(ignored when generating)")
    fmt = schema.get("format")
    if fmt is not None and fmt not in generator_formats():
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        kinds = [t for t in types if t and t != "null"]
        notes.append(f"format `{fmt}` ({'/'.join(kinds)}) at {where or '/'} is unknown to "
                     "hypothesis-jsonschema: values come from the other keywords"
                     + (" (pattern)" if "pattern" in schema else ""))
    return notes


def types_of(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return set(t) if isinstance(t, list) else {t}


def is_decimal(schema: dict) -> bool:
    return isinstance(schema, dict) and schema.get("format") == "decimal"


def validator_for(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)  # no format checking: shapes only


# --------------------------------------------------------------------------------- equality


def jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def as_decimal(v: Any) -> Decimal | None:
    if not isinstance(v, str):
        return None
    try:
        d = Decimal(v)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def equal(sent: Any, got: Any, schema: dict | None) -> bool:
    """The API's equality of a value sent and the value read back, by the field's schema."""
    schema = schema if isinstance(schema, dict) else {}
    if sent is None or got is None:
        return sent is None and got is None
    if isinstance(sent, bool) or isinstance(got, bool):
        return type(sent) is bool and type(got) is bool and sent == got
    if isinstance(sent, str):
        if isinstance(got, dict) and "value" in got:  # written as a decimal, read as money
            return equal(sent, got["value"], {"format": "decimal"})
        if not isinstance(got, str):
            return False
        if is_decimal(schema):
            a, b = as_decimal(sent), as_decimal(got)
            return a is not None and b is not None and a == b
        return sent == got
    if isinstance(sent, int):
        return type(got) is int and sent == got
    if isinstance(sent, float):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and sent == got
    if isinstance(sent, dict):
        if not isinstance(got, dict) or set(sent) != set(got):
            return False
        props = schema.get("properties", {})
        for k, v in sent.items():
            sub = props.get(k, {})
            if k == "value" and "currency" in sent and not sub:
                sub = {"format": "decimal"}
            if not equal(v, got[k], sub):
                return False
        return True
    if isinstance(sent, list):
        items = schema.get("items", {}) if isinstance(schema.get("items"), dict) else {}
        return isinstance(got, list) and len(sent) == len(got) and all(
            equal(a, b, items) for a, b in zip(sent, got))
    return sent == got


def relation(sent: Any, got: Any, schema: dict) -> str:
    """A short name for how a value read back differs from the one sent (one bug per name)."""
    if isinstance(got, str) and got.startswith("<") and got.endswith(">") and not isinstance(sent, str):
        return got.strip("<>")
    if got is None:
        return f"{jtype(sent)} became null"
    if isinstance(sent, str) and isinstance(got, str):
        if is_decimal(schema):
            a, b = as_decimal(sent), as_decimal(got)
            if a is not None and b is not None and len(got) < len(sent):
                return "decimal shortened"
            return "decimal changed"
        if got == "":
            return "string emptied"
        if got in (sent.strip(), sent.rstrip(), sent.lstrip()):
            return "whitespace trimmed"
        if sent.startswith(got) or (got.endswith("\ufffd") and sent.startswith(got.rstrip("\ufffd"))):
            return "string truncated"
        if schema.get("format") in ("date", "date-time", "local-date-time", "time"):
            return f"{schema['format']} changed"
        return "string changed"
    if isinstance(sent, int) and isinstance(got, int) and not isinstance(got, bool):
        return "integer changed"
    return f"{jtype(sent)} became {jtype(got)}"


def pointer(field: str) -> str:
    return "/" + field.replace("~", "~0").replace("/", "~1")


# --------------------------------------------------------------------------------- resources


@dataclass
class Resource:
    name: str
    collection: str | None = None  # /v1/jobs
    item: str | None = None  # /v1/jobs/{id}
    keys: list[str] = dc_field(default_factory=list)
    key_schemas: dict[str, dict] = dc_field(default_factory=dict)
    patch_schema: dict | None = None
    patch_name: str = ""
    patch_requires_if_match: bool = False
    create_schema: dict | None = None
    create_name: str = ""
    can_delete: bool = False
    read_schema: dict | None = None
    max_limit: int = 50


def body_schema(doc: Document, operation: dict) -> tuple[dict | None, str]:
    content = (operation.get("requestBody") or {})
    content = doc.deref(content).get("content", {}) if content else {}
    for media in ("application/json", "application/merge-patch+json"):
        if media in content and "schema" in content[media]:
            raw = content[media]["schema"]
            name = raw["$ref"].split("/")[-1] if isinstance(raw, dict) and "$ref" in raw else media
            return doc.deref(raw), name
    return None, ""


def find_resources(doc: Document, version: str) -> dict[str, Resource]:
    resources: dict[str, Resource] = {}
    item_re = re.compile(rf"^/{re.escape(version)}/([^/{{}}]+)/([^/]*\{{[^/]*)$")
    coll_re = re.compile(rf"^/{re.escape(version)}/([^/{{}}]+)$")
    for path, ops in doc.doc.get("paths", {}).items():
        if m := coll_re.match(path):
            res = resources.setdefault(m.group(1), Resource(m.group(1)))
            res.collection = path
            for p in (ops.get("get") or {}).get("parameters", []) or []:
                p = doc.deref(p)
                if p.get("in") == "query" and p.get("name") == "limit":
                    res.max_limit = int(p.get("schema", {}).get("maximum", 50))
            if "post" in ops:
                res.create_schema, res.create_name = body_schema(doc, ops["post"])
        elif (m := item_re.match(path)) and re.fullmatch(r"(\{[^}]+\}|[^{}]+)*", m.group(2)):
            res = resources.setdefault(m.group(1), Resource(m.group(1)))
            res.item = path
            res.keys = re.findall(r"\{([^}]+)\}", m.group(2))
            params = {}
            for op in ops.values():
                if isinstance(op, dict):
                    for p in op.get("parameters", []) or []:
                        p = doc.deref(p)
                        if p.get("in") == "path":
                            params[p["name"]] = p.get("schema", {})
            res.key_schemas = params
            res.can_delete = "delete" in ops
            if "get" in ops:
                ok = doc.deref(ops["get"].get("responses", {}).get("200", {}))
                schema = ok.get("content", {}).get("application/json", {}).get("schema")
                res.read_schema = doc.deref(schema) if schema else None
            if "patch" in ops:
                res.patch_schema, res.patch_name = body_schema(doc, ops["patch"])
                for p in ops["patch"].get("parameters", []) or []:
                    p = doc.deref(p)
                    if p.get("in") == "header" and p.get("name", "").lower() == "if-match":
                        res.patch_requires_if_match = bool(p.get("required"))
    return {n: r for n, r in resources.items() if r.item and (r.patch_schema or r.create_schema)}


def item_path(res: Resource, key: dict[str, Any]) -> str:
    """The item's path: each key part percent-encoded as (part of) one path segment."""
    path = res.item
    for k in res.keys:
        v = key[k]
        v = json.dumps(v) if isinstance(v, bool) else str(v)
        path = path.replace("{" + k + "}", urllib.parse.quote(v, safe=""), 1)
    return path


# ------------------------------------------------------------------------------------ the run


class RoundTripFailure(AssertionError):
    """A write whose outcome is not allowed. Subclasses per kind, so hypothesis keeps
    distinct failures apart and shrinks each one."""


_FAILURE_KINDS: dict[str, type] = {}


def failure_kind(kind: str) -> type:
    if kind not in _FAILURE_KINDS:
        name = "RoundTrip_" + re.sub(r"\W+", "_", kind)
        _FAILURE_KINDS[kind] = type(name, (RoundTripFailure,), {"kind": kind})
    return _FAILURE_KINDS[kind]


@dataclass
class Outcome:
    status: int | None = None
    failure: tuple[str, str] | None = None  # (kind, report)


class SetupError(Exception):
    pass


@dataclass
class FieldRun:
    resource: str
    method: str
    field: str
    cases: int = 0
    distinct: int = 0
    ok: int = 0
    invalid: int = 0
    conflict: int = 0
    notes: list[str] = dc_field(default_factory=list)
    failures: list[str] = dc_field(default_factory=list)
    errors: list[str] = dc_field(default_factory=list)


class RowPool:
    """Existing rows of a resource for PATCH examples, paged in as needed. Every example
    starts from the row as it was (each write is undone right after it is checked); a row
    that cannot be written back any more (its own fresh ETag gets 412) is dropped for the next."""

    def __init__(self, tester: Tester, res: Resource):
        self.tester, self.res = tester, res
        self.rows: list[dict] = []
        self.cursor: str | None = None
        self.exhausted = False
        self.index = 0
        self.dropped: list[str] = []
        self.probed: set[tuple[str, str]] = set()

    def _more(self) -> None:
        if self.exhausted:
            raise SetupError(f"no usable row of {self.res.name} left to PATCH; {len(self.dropped)} "
                             f"skipped, e.g. {self.dropped[:3]}")
        limit = min(50, self.res.max_limit)
        query = f"?limit={limit}" + (f"&cursor={urllib.parse.quote(self.cursor, safe='')}" if self.cursor else "")
        ex = self.tester.get(f"{self.res.collection}{query}")
        r = ex.response
        if r.status != 200 or not isinstance(r.body, dict) or not isinstance(r.body.get("data"), list):
            raise SetupError(f"cannot list {self.res.name}:\n  {ex.describe()}")
        page = r.body["data"]
        missing = [k for k in self.res.keys if page and k not in page[0]]
        if missing:
            raise SetupError(f"the rows of {self.res.name} do not show the key fields {missing}")
        self.rows += page
        self.cursor = r.body.get("next_cursor")
        self.exhausted = not self.cursor or not page

    def key(self) -> dict[str, Any]:
        while self.index >= len(self.rows):
            self._more()
        return {k: self.rows[self.index][k] for k in self.res.keys}

    def drop(self, why: str) -> None:
        self.index += 1
        self.dropped.append(why)


class Tester:
    def __init__(self, client: Client, doc: Document, args: argparse.Namespace):
        self.client = client
        self.doc = doc
        self.args = args
        self.counters: dict[tuple[str, str], int] = {}
        self.undo_notes: set[str] = set()

    # ---- helpers

    def get(self, path: str) -> Exchange:
        return self.client.request("GET", path)

    def first_rows(self, res: Resource, limit: int) -> list[dict]:
        ex = self.get(f"{res.collection}?limit={limit}")
        r = ex.response
        if r.status != 200 or not isinstance(r.body, dict) or not isinstance(r.body.get("data"), list):
            raise SetupError(f"cannot list {res.name}:\n  {ex.describe()}")
        return r.body["data"]

    def fetch_item(self, path: str) -> tuple[Exchange, str | None]:
        ex = self.get(path)
        return ex, ex.response.headers.get("etag")

    def exists(self, res: Resource, key: dict[str, Any]) -> bool:
        if any(key.get(k) is None for k in res.keys):
            return False
        ex = self.get(item_path(res, key))
        body = ex.response.body
        # A key with an empty part can land on the collection: only an item counts.
        return ex.response.status == 200 and isinstance(body, dict) and all(k in body for k in res.keys)

    def check_422(self, ex: Exchange, field: str) -> str | None:
        """None if the response is a 422 problem naming the field (and nothing else)."""
        r = ex.response
        if r.content_type != "application/problem+json":
            return f"422 with Content-Type {r.content_type!r}, not application/problem+json"
        errors = r.body.get("errors") if isinstance(r.body, dict) else None
        if not isinstance(errors, list) or not errors:
            return "422 problem without an `errors` list"
        want = pointer(field)
        pointers = [e.get("pointer") if isinstance(e, dict) else None for e in errors]
        if want not in pointers and not any(isinstance(p, str) and p.startswith(want + "/") for p in pointers):
            return f"422 `errors` do not name {want} (they name {pointers})"
        others = [p for p in pointers if not (p == want or (isinstance(p, str) and p.startswith(want + "/")))]
        if others:
            return f"422 `errors` also blame {others}, though only {want} was varied"
        return None

    # ---- PATCH

    def take_row(self, res: Resource, pool: RowPool, field: str) -> tuple[str, Exchange, str | None]:
        """A row to write the field of: readable by its key, and (checked once per row and
        field, by writing its own value back) writable with its own ETag. Rows left broken by
        earlier runs, or created with keys that do not read back, are skipped."""
        while True:
            key = pool.key()
            path = item_path(res, key)
            before, etag = self.fetch_item(path)
            body = before.response.body
            if before.response.status != 200 or not isinstance(body, dict):
                pool.drop(f"{path}: {before.response.status} on GET")
                continue
            if not etag and res.patch_requires_if_match:
                raise SetupError(f"GET {path} sent no ETag, but PATCH requires If-Match")
            ident = (path, field)
            if ident not in pool.probed and field in body:
                pool.probed.add(ident)
                ex = self.client.request("PATCH", path, {field: body[field]}, {"If-Match": etag} if etag else {})
                if ex.response.status in (412, 428):
                    pool.drop(f"{path}: {ex.response.status} writing its own {field} back with its own ETag")
                    continue
                if ex.response.status == 200:
                    before, etag = self.fetch_item(path)
            return path, before, etag

    def patch_case(self, res: Resource, pool: RowPool, field: str, schema: dict, value: Any) -> Outcome:
        path, before, etag = self.take_row(res, pool, field)
        original = before.response.body.get(field, _NO_VALUE)
        ex = self.client.request("PATCH", path, {field: value}, {"If-Match": etag} if etag else {})
        r = ex.response
        report = [f"value: {visible(repr(value))}", f"request: {ex.describe()}"]
        if r.status == 200:
            got = r.body.get(field, "<absent>") if isinstance(r.body, dict) else "<no JSON object>"
            if isinstance(r.body, dict) and all(k in r.body for k in res.keys):
                path = item_path(res, {k: r.body[k] for k in res.keys})
            after, etag = self.fetch_item(path)
            report.append(f"read back: {after.describe()}")
            back = after.response.body.get(field, "<absent>") if isinstance(after.response.body, dict) else "<no JSON object>"
            failure = None
            if not equal(value, got, schema):
                failure = (f"200, response: {relation(value, got, schema)}",
                           f"200, but the response has {field} = {visible(repr(got))}")
            elif after.response.status != 200 or not equal(value, back, schema):
                failure = (f"200, read back: {relation(value, back, schema)}",
                           f"200, but GET reads back {field} = {visible(repr(back))}")
            # Undo the write, with the ETag just read, as any client would: the next example
            # starts from the same row, and a row whose ETag no longer matches is a failure.
            broken = self.undo(res, pool, path, etag, field, original, after)
            if broken:
                report.append(broken[1])
                if failure is None:
                    failure = (broken[0], "200, but afterwards the row cannot be written with its own ETag")
            if failure:
                return Outcome(200, (failure[0], "\n".join([failure[1], *report])))
            return Outcome(200)
        if r.status == 422:
            problem = self.check_422(ex, field)
            if problem:
                return Outcome(422, ("422 without the field's pointer", "\n".join([problem, *report])))
            return Outcome(422)
        if r.status in (412, 428):
            pool.drop(f"{path}: {r.status} on a write of {field}")
            return Outcome(r.status, (f"status {r.status}", "\n".join(
                [(f"{r.status} although If-Match is the ETag of a GET made just before (a bug in "
                  "roundtrip.py's If-Match handling, or an ETag the server cannot match)"),
                 f"that GET: {before.describe()}", *report])))
        return Outcome(r.status, (f"status {r.status}", "\n".join(
            [f"unexpected status {r.status}", *report])))

    def undo(self, res: Resource, pool: RowPool, path: str, etag: str | None, field: str,
             original: Any, after: Exchange) -> tuple[str, str] | None:
        """Writes the field's original value back. Returns (kind, report) when the row's own
        fresh ETag is refused; the row is then written back without If-Match where allowed,
        or dropped from the pool."""
        if original is _NO_VALUE:
            return None
        ex = self.client.request("PATCH", path, {field: original}, {"If-Match": etag} if etag else {})
        status = ex.response.status
        if status == 200:
            return None
        if status not in (412, 428):
            self.undo_notes.add(f"could not write {field} back to its original {visible(repr(original))}: "
                                f"{status} {clip(ex.response.text)}")
            return None
        report = (f"undo: {ex.describe()}\n(the If-Match is the ETag of the read-back GET: the value "
                  "written leaves a row whose ETag the server does not match)")
        retry = None if res.patch_requires_if_match else self.client.request("PATCH", path, {field: original})
        if retry is None or retry.response.status != 200:
            pool.drop(f"{path}: its ETag was refused after a write of {field}")
        return (f"row's ETag refused after the write ({status})", report)

    # ---- POST

    def unique_key(self, res: Resource, part: str, schema: dict, base_key: dict[str, Any]) -> Any:
        """A value for key part `part` that no row has yet, from a counter that fits the schema."""
        kinds = types_of(schema) - {"null"}
        if "integer" in kinds or "number" in kinds:
            lo = schema.get("minimum", 1)
            hi = schema.get("maximum", 2**31 - 1)
            start = max(lo, min(900_000_000, hi))
            candidates = [lambda n, s=start: s + n]

            def fits(v: int) -> bool:
                return lo <= v <= hi
        else:
            max_len = schema.get("maxLength", 12)
            min_len = schema.get("minLength", 0)
            pattern = schema.get("pattern")
            candidates = []
            for width in range(min(max_len - 2, 8), 1, -1):
                candidates.append(lambda n, w=width: "RT" + str(n).zfill(w))
            for width in range(min(max_len, 8), 0, -1):
                candidates.append(lambda n, w=width: str(n).zfill(w))
                candidates.append(lambda n, w=width: base26(n, w, "A"))
                candidates.append(lambda n, w=width: base26(n, w, "a"))

            def fits(v: str) -> bool:
                return (min_len <= len(v) <= max_len
                        and (pattern is None or re.search(pattern, v) is not None))

        make = None
        for cand in candidates:
            try:
                if fits(cand(1)) and fits(cand(999)):
                    make = cand
                    break
            except (ValueError, re.error):
                continue
        if make is None:
            raise SetupError(f"cannot make unique values for key `{part}` of {res.name} "
                             f"from its schema {json.dumps(schema)}")
        counter_key = (res.name, part)
        n = self.counters.get(counter_key)
        if n is None:
            # Rows left by earlier runs (a resource without DELETE keeps them): gallop past them.
            n, step = 1, 1
            while self.exists(res, {**base_key, part: make(n)}):
                n, step = n + step, step * 2
            self.counters[counter_key] = n
        for _ in range(10_000):
            v = make(n)
            if not fits(v):
                break
            n += 1
            if not self.exists(res, {**base_key, part: v}):
                self.counters[counter_key] = n
                return v
        raise SetupError(f"ran out of unique values for key `{part}` of {res.name}")

    def base_body(self, res: Resource) -> tuple[dict, dict]:
        """A create body from an existing row's values of the required fields, and that row."""
        schema = res.create_schema
        props = schema.get("properties", {})
        required = schema.get("required", [])
        reasons = []
        for row in self.first_rows(res, 1) + self.first_rows(res, min(50, res.max_limit)):
            body, bad = {}, []
            for f in required:
                if f not in row:
                    bad.append(f"{f} is not in the row as read")
                    continue
                converted = to_create_shape(row[f], props.get(f, {}))
                if converted is _NO_VALUE:
                    bad.append(f"{f} = {row[f]!r} does not fit {json.dumps(props.get(f, {}))}")
                else:
                    body[f] = converted
            if not bad:
                return body, row
            reasons.append(bad)
        raise SetupError(f"no row of {res.name} gives a valid base body for POST: {reasons[:2]}")

    def post_case(self, res: Resource, base: dict, row: dict, field: str, schema: dict, value: Any) -> Outcome:
        props = res.create_schema.get("properties", {})
        body = copy.deepcopy(base)
        key_parts = [k for k in res.keys if k in props]
        # Keys: when a key part is the varied field, the generated value with the other parts
        # from the base row (it may exist: then 409 is expected); otherwise the base row's key
        # with its last part made unique from a counter, so every example writes a new row.
        for k in key_parts:
            body[k] = base.get(k, row.get(k))
        if key_parts and field not in key_parts:
            last = key_parts[-1]
            body[last] = self.unique_key(res, last, strip_descriptions(props[last]),
                                         {k: body.get(k, row.get(k)) for k in res.keys})
        body[field] = value
        key = {k: body.get(k) for k in res.keys}
        existed = all(k in body for k in res.keys) and self.exists(res, key)

        ex = self.client.request("POST", res.collection, body)
        r = ex.response
        report = [f"value: {visible(repr(value))}", f"request: {ex.describe()}"]
        if r.status == 201:
            if existed:
                return Outcome(201, ("201 for an existing key", "\n".join(
                    ["201, though a row with this key already existed", *report])))
            location = r.headers.get("location")
            if location:
                path = self.client.path_of(location)
            elif isinstance(r.body, dict) and all(k in r.body for k in res.keys):
                path = item_path(res, {k: r.body[k] for k in res.keys})
            else:
                path = item_path(res, key)
            after, etag = self.fetch_item(path)
            report.append(f"read back: {after.describe()}")
            try:
                for f, sent in body.items():
                    fschema = strip_descriptions(props.get(f, {}))
                    got = r.body.get(f, "<absent>") if isinstance(r.body, dict) else "<no JSON object>"
                    if not equal(sent, got, fschema):
                        which = "the varied field" if f == field else f"base field {f}"
                        return Outcome(201, (f"201, response {f if f != field else ''}: {relation(sent, got, fschema)}",
                                             "\n".join([f"201, but the response has {f} = {visible(repr(got))} ({which}, sent {visible(repr(sent))})", *report])))
                    b = after.response
                    back = b.body.get(f, "<absent>") if isinstance(b.body, dict) else "<no JSON object>"
                    if b.status != 200 or not equal(sent, back, fschema):
                        which = "the varied field" if f == field else f"base field {f}"
                        return Outcome(201, (f"201, read back {f if f != field else ''}: {relation(sent, back, fschema)}",
                                             "\n".join([f"201, but GET reads back {f} = {visible(repr(back))} ({which}, sent {visible(repr(sent))})", *report])))
                return Outcome(201)
            finally:
                if res.can_delete and after.response.status == 200:
                    d = self.client.request("DELETE", path, headers={"If-Match": etag} if etag else {})
                    if d.response.status not in (200, 202, 204):
                        print(f"  note: could not delete the created row: {d.describe()}", flush=True)
        if r.status == 409:
            if existed:
                return Outcome(409)
            return Outcome(409, ("409 for a new key", "\n".join(
                ["409, though no row with this key existed (checked with GET first)", *report])))
        if r.status == 422:
            problem = self.check_422(ex, field)
            if problem:
                return Outcome(422, ("422 without the field's pointer", "\n".join([problem, *report])))
            return Outcome(422)
        return Outcome(r.status, (f"status {r.status}", "\n".join([f"unexpected status {r.status}", *report])))

    # ---- hypothesis driver

    def run_field(self, res: Resource, method: str, field: str, schema: dict, case) -> FieldRun:
        """Runs hypothesis on one field. Hypothesis stops generating at the first failure (and
        shrinks it); to find the field's other bugs too, it runs again, up to --rounds times,
        with the kinds of failure already found counted but no longer raised. Outcomes are
        memoised per value, so a replay (and a later round) gets the same outcome without
        writing again: a POST whose key now exists would otherwise turn a failure into a 409."""
        run = FieldRun(res.name, method, field)
        gen_schema = strip_descriptions(schema)
        run.notes += generator_notes(gen_schema)
        strategy = generator().from_schema(gen_schema)
        memo: dict[str, Outcome] = {}
        known: set[str] = set()

        def one(value: Any) -> None:
            run.cases += 1
            token = json.dumps(value, sort_keys=True)
            outcome = memo.get(token)
            if outcome is None:
                outcome = case(value)
                memo[token] = outcome
                run.distinct += 1
                if outcome.failure is None:
                    if outcome.status is not None and 200 <= outcome.status < 300:
                        run.ok += 1
                    elif outcome.status == 422:
                        run.invalid += 1
                    elif outcome.status == 409:
                        run.conflict += 1
            failure = outcome.failure
            if failure is not None and failure[0] not in known:
                raise failure_kind(failure[0])(failure[1])

        conf: dict[str, Any] = {
            "max_examples": self.args.examples,
            "deadline": None,
            "database": None,
            "suppress_health_check": list(HealthCheck),
            "verbosity": Verbosity.quiet,
            "report_multiple_bugs": True,
            "print_blob": False,
            "phases": [Phase.explicit, Phase.generate, Phase.shrink],
        }
        if self.args.seed is None:
            conf["derandomize"] = True
        test = settings(**conf)(given(strategy)(one))
        if self.args.seed is not None:
            test = hypothesis.seed(self.args.seed)(test)
        for _ in range(max(self.args.rounds, 1)):
            found: list[BaseException] = []
            try:
                test()
            except BaseExceptionGroup as group:
                found = flatten(group)
            except Exception as e:  # noqa: BLE001 - a failure, the generator, the network, or this script
                found = [e]
            new = False
            for e in found:
                if isinstance(e, RoundTripFailure):
                    if e.kind not in known:
                        known.add(e.kind)
                        run.failures.append(str(e))
                        new = True
                elif isinstance(e, SetupError):
                    run.errors.append(str(e))
                elif run.distinct == 0:
                    run.errors.append("hypothesis-jsonschema could not generate a value from the field's "
                                      f"schema {json.dumps(gen_schema)}: {describe_error(e)}")
                else:
                    run.errors.append(describe_error(e))
            if not new or run.errors:
                break
        return run


def flatten(group: BaseExceptionGroup) -> list[BaseException]:
    out = []
    for e in group.exceptions:
        out += flatten(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def describe_error(e: BaseException) -> str:
    notes = "".join(f"\n    {n}" for n in getattr(e, "__notes__", []) or [])
    return f"{type(e).__name__}: {e}{notes}"


_NO_VALUE = object()


def to_create_shape(value: Any, schema: dict) -> Any:
    """An existing row's value as the create schema wants it (money object <-> decimal)."""
    v = validator_for(strip_descriptions(schema))
    if v.is_valid(value):
        return value
    candidates = []
    if isinstance(value, dict) and "value" in value:
        candidates.append(value["value"])
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        props = schema.get("properties", {})
        if "value" in props:
            cur = props.get("currency", {})
            currency = (cur.get("enum") or [cur.get("const", "USD")])[0]
            candidates.append({"value": str(value), "currency": currency})
    if isinstance(value, str):
        candidates.append(value.strip())
    for c in candidates:
        if v.is_valid(c):
            return c
    return _NO_VALUE


def base26(n: int, width: int, first: str) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 26)
        digits = chr(ord(first) + r) + digits
    return digits.rjust(width, first)


# ------------------------------------------------------------------------------------ main


def print_run(run: FieldRun, seconds: float) -> None:
    status = "FAIL" if run.failures else ("ERROR" if run.errors else "ok")
    extra = f", {run.conflict} 409 (existing key)" if run.conflict else ""
    print(f"{status:5} {run.resource} {run.method} {pointer(run.field)}: {run.cases} cases "
          f"({run.distinct} distinct values): {run.ok} 2xx, {run.invalid} 422{extra}"
          + (f"; {len(run.failures)} failure(s)" if run.failures else "")
          + f"  [{seconds:.1f}s]", flush=True)
    for n in run.notes:
        print(f"      note: {n}", flush=True)
    for f in run.failures:
        print(f"      FAILURE ({run.resource}, {run.method} {pointer(run.field)}, minimal example):", flush=True)
        for line in f.splitlines():
            print(f"        {line}", flush=True)
    for e in run.errors:
        print("      ERROR: " + e.replace("\n", "\n        "), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="Portico's base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--version", required=True, help="API version, e.g. v1")
    ap.add_argument("--token", help="Bearer token (with the read and write scopes of the resources)")
    ap.add_argument("--examples", type=int, default=100, help="hypothesis max_examples per field (default 100)")
    ap.add_argument("--seed", type=int, help="hypothesis seed (default: derandomized, the same values every run)")
    ap.add_argument("--resource", action="append", help="only this resource (repeatable; default: all with writes)")
    ap.add_argument("--field", action="append", help="only this field (repeatable)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="hypothesis runs per field to find distinct failures, each run past the kinds already found (default 4)")
    ap.add_argument("--method", action="append", choices=["PATCH", "POST"], help="only this write (repeatable)")
    args = ap.parse_args()

    client = Client(args.base, args.token)
    ex = client.request("GET", f"/openapi/{args.version}.json")
    if ex.response.status != 200 or not isinstance(ex.response.body, dict):
        print(f"ERROR cannot fetch the OpenAPI document:\n  {ex.describe()}")
        return 1
    doc = Document(ex.response.body)
    resources = find_resources(doc, args.version)
    if args.resource:
        missing = [r for r in args.resource if r not in resources]
        if missing:
            print(f"ERROR no writable resource {missing} in {args.version} (writable: {sorted(resources)})")
            return 1
        resources = {n: resources[n] for n in args.resource}
    if not resources:
        print(f"ERROR {args.version} has no resource with a PATCH or POST")
        return 1
    print(f"round trips on {args.base} {args.version}: " + ", ".join(
        f"{r.name} ({'/'.join(m for m, s in (('PATCH', r.patch_schema), ('POST', r.create_schema)) if s)})"
        for r in resources.values())
        + f"; {args.examples} examples per field, "
        + (f"seed {args.seed}" if args.seed is not None else "derandomized")
        + f"; hypothesis {hypothesis.__version__}", flush=True)

    tester = Tester(client, doc, args)
    runs: list[FieldRun] = []
    started = time.monotonic()
    methods = set(args.method or ["PATCH", "POST"])

    def untestable(res, method, error):
        run = FieldRun(res.name, method, "*", errors=[str(error)])
        print_run(run, 0.0)
        runs.append(run)

    def fields(props):
        return [(f, schema) for f, schema in props.items() if not args.field or f in args.field]

    for res in resources.values():
        if res.patch_schema and "PATCH" in methods:
            props = res.patch_schema.get("properties", {})
            pool = RowPool(tester, res)
            try:
                pool.key()
            except SetupError as e:
                untestable(res, "PATCH", e)
                continue
            for field, schema in fields(props):
                t0 = time.monotonic()
                tester.undo_notes = set()
                dropped = len(pool.dropped)
                run = tester.run_field(res, "PATCH", field, schema,
                                       lambda v, f=field, s=schema, r=res, p=pool: tester.patch_case(r, p, f, s, v))
                run.notes += sorted(tester.undo_notes)[:3]
                if len(pool.dropped) > dropped:
                    skipped = pool.dropped[dropped:]
                    run.notes.append(f"{len(skipped)} row(s) set aside, e.g. " + "; ".join(skipped[:2]))
                print_run(run, time.monotonic() - t0)
                runs.append(run)
        if res.create_schema and "POST" in methods:
            props = res.create_schema.get("properties", {})
            try:
                base, row = tester.base_body(res)
            except SetupError as e:
                untestable(res, "POST", e)
                continue
            for field, schema in fields(props):
                t0 = time.monotonic()
                run = tester.run_field(res, "POST", field, schema,
                                       lambda v, f=field, s=schema, r=res, b=base, w=row: tester.post_case(r, b, w, f, s, v))
                print_run(run, time.monotonic() - t0)
                runs.append(run)

    failed = [r for r in runs if r.failures]
    errored = [r for r in runs if r.errors and not r.failures]
    passed = len(runs) - len(failed) - len(errored)
    print(f"roundtrip summary: {len(runs)} fields: {passed} ok, {len(failed)} with failures, "
          f"{len(errored)} with errors; {client.requests} requests in {time.monotonic() - started:.0f}s",
          flush=True)
    return 1 if failed or errored else 0


if __name__ == "__main__":
    sys.exit(main())
