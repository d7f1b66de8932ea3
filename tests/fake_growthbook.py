"""A fake GrowthBook REST API server that checks every request and response against the spec.

It serves, on 127.0.0.1 and a free port (``http.server`` in a background thread), exactly the
endpoints :mod:`rollout.growthbook.client` uses, over in-memory features (rules per environment,
revisions, drafts, publish), experiments and saved groups. Each request body, query and path
parameter and each response body is validated against GrowthBook's OpenAPI 5.0.1 spec
(``tests/reference/growthbook/openapi-subset.json``: these operations and every component they
reference, made by ``tests/reference/make_growthbook_subset.py``; jsonschema Draft 2020-12 with
a ``referencing`` registry over the whole document): an invalid request gets a 400, and every
failure, request or response, is kept in ``validation_failures``; the ``fake_growthbook``
fixture fails the test at teardown if there is any.

One liberty with the spec: its composed schemas (``allOf`` of objects that each say
``additionalProperties: false``) accept no object at all under strict Draft 2020-12 (each part
rejects the other parts' properties). :func:`relax_compositions` rewrites them the way they are
meant, with ``unevaluatedProperties: false`` on the composition instead, so unknown properties
are still refused.

Faults can be programmed with :meth:`FakeGrowthBook.inject` (429 bursts with ``Retry-After``,
5xx, slow responses, a failure of the k-th write, with or without the write applied), and
:meth:`FakeGrowthBook.sdk_payload` compiles an environment's SDK payload the way GrowthBook
does, for checking with the official SDK.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "reference" / "growthbook" / "openapi-subset.json"
SPEC_URI = "urn:growthbook:openapi-5.0.1"
API_KEY = "secret_fake_4f9c2b7e1d0a"
ACTIVE_DRAFTS = ("draft", "pending-review", "approved", "changes-requested")
ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "gates": {"type": "array", "items": {"$ref": f"{SPEC_URI}#/components/schemas/gates"}},
    },
    "required": ["message"],
    "additionalProperties": False,
}

# ------------------------------------------------------------------ the spec and its validation


def relax_compositions(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with each closed ``allOf`` closed as a whole (``unevaluatedProperties``).

    Parts of an ``allOf`` (and the ``anyOf``/``oneOf``/``$ref`` inside them) lose
    ``additionalProperties: false``; a ``$ref`` from inside a part points at an open copy under
    ``#/components/x-open-schemas``; the outermost composition gets
    ``unevaluatedProperties: false`` when any part was closed.
    """
    schemas = spec["components"]["schemas"]
    prefix = "#/components/schemas/"
    open_copies: dict[str, Any] = {}
    pending: list[str] = []

    def name_of(ref: str) -> str:
        return ref[len(prefix) :].replace("~1", "/").replace("~0", "~")

    def is_closing(node: Any, seen: frozenset[str]) -> bool:
        if not isinstance(node, dict):
            return False
        if node.get("additionalProperties") is False:
            return True
        ref = node.get("$ref", "")
        if ref.startswith(prefix) and name_of(ref) not in seen:
            return is_closing(schemas[name_of(ref)], seen | {name_of(ref)})
        return any(
            is_closing(s, seen) for k in ("allOf", "anyOf", "oneOf") for s in node.get(k, [])
        )

    def fix(node: Any, is_open: bool) -> Any:
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "allOf":
                out[key] = [fix(s, True) for s in value]
            elif key in ("anyOf", "oneOf"):
                out[key] = [fix(s, is_open) for s in value]
            elif key == "$ref" and is_open and value.startswith(prefix):
                name = name_of(value)
                if name not in open_copies:
                    open_copies[name] = None
                    pending.append(name)
                out[key] = "#/components/x-open-schemas/" + value[len(prefix) :]
            elif key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
                out[key] = {n: fix(s, False) for n, s in value.items()}
            elif key in ("items", "additionalProperties", "not", "propertyNames", "contains"):
                out[key] = fix(value, False)
            elif key == "prefixItems":
                out[key] = [fix(s, False) for s in value]
            else:
                out[key] = value
        composed = any(k in node for k in ("allOf", "anyOf", "oneOf"))
        if is_open and out.get("additionalProperties") is False:
            del out["additionalProperties"]
        elif composed and out.get("additionalProperties") is False:
            del out["additionalProperties"]
            out["unevaluatedProperties"] = False
        elif not is_open and "allOf" in node and is_closing(node, frozenset()):
            out["unevaluatedProperties"] = False
        return out

    relaxed = dict(spec)
    relaxed["components"] = dict(spec["components"])
    relaxed["components"]["schemas"] = {n: fix(s, False) for n, s in schemas.items()}
    relaxed_paths: dict[str, Any] = {}
    for path, operations in spec["paths"].items():
        relaxed_paths[path] = {}
        for method, op in operations.items():
            if not isinstance(op, dict):
                relaxed_paths[path][method] = op
                continue
            op = copy.deepcopy(op)
            for media in op.get("requestBody", {}).get("content", {}).values():
                media["schema"] = fix(media["schema"], False)
            for response in op.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    media["schema"] = fix(media["schema"], False)
            for parameter in op.get("parameters", []):
                if "schema" in parameter:
                    parameter["schema"] = fix(parameter["schema"], False)
            relaxed_paths[path][method] = op
    relaxed["paths"] = relaxed_paths
    while pending:
        name = pending.pop()
        open_copies[name] = fix(schemas[name], True)
    relaxed["components"]["x-open-schemas"] = open_copies
    return relaxed


@functools.cache
def load_spec() -> dict[str, Any]:
    """GrowthBook's OpenAPI document, relaxed (:func:`relax_compositions`); once per process."""
    return relax_compositions(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


class SpecValidator:
    """Validates instances against schemas of the spec, addressed by JSON pointer."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    def errors(self, pointer: str, instance: Any) -> list[str]:
        """Messages for each way ``instance`` breaks the schema at ``pointer`` (empty: valid)."""
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator(
                {"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry
            )
            self._validators[pointer] = validator
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    def errors_for(self, schema: dict[str, Any], instance: Any) -> list[str]:
        """Messages for an ad-hoc schema that may ``$ref`` into the spec."""
        validator = Draft202012Validator(schema, registry=self.registry)
        return [e.message[:300] for e in validator.iter_errors(instance)]


@functools.cache
def spec_validator() -> SpecValidator:
    """The process-wide validator, built once."""
    return SpecValidator(load_spec())


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


# ------------------------------------------------------------------------------ the fake


class HttpError(Exception):
    """Ends a request with this status and ``{"message": ...}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, **extra}


@dataclass
class Fault:
    """A programmed failure, matched against incoming requests in injection order.

    The first ``skip`` matching requests pass; the next ``times`` get the fault: ``status``
    (with ``Retry-After: retry_after`` and ``message`` when set) and/or a ``delay`` in seconds
    before the response. With ``handle=True`` the request is carried out first (a write that
    happens but whose response is lost). ``writes_only`` matches only non-GET requests.
    """

    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    delay: float = 0.0
    times: int = 1
    skip: int = 0
    writes_only: bool = False
    handle: bool = False


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it, with the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    authorization: str | None


@dataclass
class Revision:
    version: int
    base_version: int
    status: str
    comment: str
    rules: list[dict[str, Any]]
    date: str


@dataclass
class Feature:
    key: str
    value_type: str
    default_value: str
    environments: dict[str, bool]
    revisions: dict[int, Revision] = field(default_factory=dict)
    live: int = 1
    created: str = ""

    @property
    def live_rules(self) -> list[dict[str, Any]]:
        return self.revisions[self.live].rules


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_value(raw: str, value_type: str) -> Any:
    return raw if value_type == "string" else json.loads(raw)


Route = tuple[str, re.Pattern[str], str, Callable[..., Any]]


class FakeGrowthBook:
    """In-memory GrowthBook behind a real HTTP server; see the module docstring."""

    def __init__(self, api_key: str = API_KEY, *, max_limit: int = 100) -> None:
        self.api_key = api_key
        self.max_limit = max_limit
        self.features: dict[str, Feature] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.saved_groups: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.validation_failures: list[str] = []
        self.faults: list[Fault] = []
        self.validator = spec_validator()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        revision = "/v2/features/{id}/revisions/{version}"
        self.routes: list[Route] = [
            self._route("GET", "/v2/features", self._list_features),
            self._route("GET", "/v2/features/{id}", self._get_feature),
            self._route("POST", "/v2/features/{id}/revisions", self._draft),
            self._route("POST", revision + "/rules", self._add_rule),
            self._route("POST", revision + "/rules/reorder", self._reorder),
            self._route("PUT", revision + "/rules/{ruleId}", self._update_rule),
            self._route("DELETE", revision + "/rules/{ruleId}", self._delete_rule),
            self._route("POST", revision + "/publish", self._publish),
            self._route("POST", revision + "/discard", self._discard),
            self._route("GET", "/v1/experiments", self._list_experiments),
            self._route("GET", "/v1/experiments/{id}", self._get_experiment),
            self._route("GET", "/v1/saved-groups", self._list_groups),
            self._route("POST", "/v1/saved-groups", self._create_group),
            self._route("POST", "/v1/saved-groups/{id}", self._update_group),
        ]

    @staticmethod
    def _route(method: str, spec_path: str, handle: Callable[..., Any]) -> Route:
        """A route for one spec operation; ``{name}`` segments become named groups."""
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", "/api" + spec_path)
        return method, re.compile(pattern), spec_path, handle

    # ---------------------------------------------------------------- server lifecycle

    @property
    def url(self) -> str:
        """The base URL to give the client (``http://127.0.0.1:PORT``)."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGrowthBook:
        """Listen on a free port in a background thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def do_POST(self) -> None:
                fake._serve(self)

            def do_PUT(self) -> None:
                fake._serve(self)

            def do_DELETE(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------ programming the fake

    def inject(self, fault: Fault) -> None:
        """Add a fault (see :class:`Fault`)."""
        with self._lock:
            self.faults.append(fault)

    @property
    def writes(self) -> list[Recorded]:
        """The non-GET requests received so far."""
        return [r for r in self.requests if r.method != "GET"]

    def add_feature(
        self,
        key: str,
        *,
        value_type: str = "string",
        default_value: str = "new-model",
        environments: tuple[str, ...] = ("production", "dev"),
        rules: list[dict[str, Any]] | None = None,
    ) -> Feature:
        """A feature whose live revision 1 holds ``rules`` (stored FeatureRuleV2 shape)."""
        created = _now()
        feature = Feature(key, value_type, default_value, dict.fromkeys(environments, True))
        feature.created = created
        feature.revisions[1] = Revision(1, 0, "published", "created", list(rules or []), created)
        with self._lock:
            self.features[key] = feature
        return feature

    def experiment_rule(
        self, experiment_id: str, values: list[str], *, environments: tuple[str, ...]
    ) -> dict[str, Any]:
        """A stored ``experiment-ref`` rule serving ``values`` for the experiment's variations."""
        experiment = self.experiments[experiment_id]
        return {
            "id": self._new_id("fr"),
            "description": f"experiment {experiment['trackingKey']}",
            "enabled": True,
            "type": "experiment-ref",
            "experimentId": experiment_id,
            "variations": [
                {"variationId": v["variationId"], "value": value}
                for v, value in zip(experiment["variations"], values, strict=True)
            ],
            "allEnvironments": False,
            "environments": list(environments),
        }

    def add_experiment(
        self,
        tracking_key: str,
        *,
        variations: list[str],
        weights: list[float],
        coverage: float = 1.0,
        seed: str | None = None,
        status: str = "running",
    ) -> dict[str, Any]:
        """A running experiment with one phase (``trafficSplit`` carries the weights)."""
        experiment_id = self._new_id("exp")
        now = _now()
        vars_ = [
            {
                "variationId": f"var_{experiment_id}_{i}",
                "key": str(i),
                "name": name,
                "description": "",
                "screenshots": [],
            }
            for i, name in enumerate(variations)
        ]
        experiment = {
            "id": experiment_id,
            "trackingKey": tracking_key,
            "dateCreated": now,
            "dateUpdated": now,
            "name": tracking_key,
            "type": "standard",
            "project": "",
            "hypothesis": "",
            "description": "",
            "tags": [],
            "owner": "",
            "archived": False,
            "status": status,
            "autoRefresh": False,
            "hashAttribute": "id",
            "hashVersion": 2,
            "variations": vars_,
            "phases": [
                {
                    "name": "Main",
                    "dateStarted": now,
                    "dateEnded": "",
                    "reasonForStopping": "",
                    "seed": seed or tracking_key,
                    "coverage": coverage,
                    "trafficSplit": [
                        {"variationId": v["variationId"], "weight": w}
                        for v, w in zip(vars_, weights, strict=True)
                    ],
                    "targetingCondition": "",
                }
            ],
            "settings": {
                "datasourceId": "",
                "assignmentQueryId": "",
                "experimentId": tracking_key,
                "segmentId": "",
                "queryFilter": "",
                "inProgressConversions": "include",
                "attributionModel": "firstExposure",
                "statsEngine": "bayesian",
                "goals": [],
                "secondaryMetrics": [],
                "guardrails": [],
            },
        }
        with self._lock:
            self.experiments[experiment_id] = experiment
        return experiment

    def add_saved_group(self, name: str, attribute_key: str, values: list[str]) -> dict[str, Any]:
        """A list saved group, as if created in the UI."""
        return self._store_group({"name": name, "attributeKey": attribute_key, "values": values})

    def edit_live(self, key: str, edit: Callable[[list[dict[str, Any]]], None]) -> int:
        """Publish a new revision whose rules are the live ones changed by ``edit`` (a human
        in the UI); return its version."""
        with self._lock:
            feature = self.features[key]
            rules = copy.deepcopy(feature.live_rules)
            edit(rules)
            version = max(feature.revisions) + 1
            feature.revisions[version] = Revision(
                version, feature.live, "published", "UI", rules, _now()
            )
            feature.live = version
            return version

    def new_rule_id(self) -> str:
        """A fresh rule id, for rules added with :meth:`edit_live`."""
        return self._new_id("fr")

    def sdk_payload(self, environment: str) -> dict[str, Any]:
        """The SDK payload GrowthBook would serve for ``environment``: live revisions only."""
        with self._lock:
            features = {}
            for key, feature in self.features.items():
                if not feature.environments.get(environment):
                    continue
                rules = [
                    self._sdk_rule(feature, r)
                    for r in feature.live_rules
                    if r.get("enabled", True)
                    and (r.get("allEnvironments") or environment in r.get("environments", []))
                ]
                features[key] = {
                    "defaultValue": _parse_value(feature.default_value, feature.value_type),
                    "rules": [r for r in rules if r is not None],
                }
            groups = {
                g["id"]: list(g["values"])
                for g in self.saved_groups.values()
                if g["type"] == "list"
            }
            return {"features": features, "savedGroups": groups}

    # ------------------------------------------------------------------ request handling

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        url = urlsplit(handler.path)
        path, query = unquote(url.path), parse_qs(url.query, keep_blank_values=True)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        authorization = handler.headers.get("Authorization")
        body: Any = None
        headers: dict[str, str] = {}
        fault = self._take_fault(method)
        try:
            if fault is not None and not fault.handle:
                self._stopping.wait(fault.delay)
                if fault.status is not None:
                    if fault.retry_after is not None:
                        headers["Retry-After"] = f"{fault.retry_after:g}"
                    raise HttpError(fault.status, fault.message or f"injected {fault.status}")
            if authorization != f"Bearer {self.api_key}":
                raise HttpError(401, "Unauthorized: no valid API key")
            try:
                body = json.loads(raw) if raw else None
            except ValueError as exc:
                self.validation_failures.append(f"{method} {path}: body is not JSON")
                raise HttpError(400, "request body is not JSON") from exc
            status, payload, spec_path = self._dispatch(method, path, query, body)
            self._check_response(method, spec_path, payload)
            if fault is not None:
                self._stopping.wait(fault.delay)
                if fault.status is not None:
                    raise HttpError(fault.status, f"injected {fault.status} after handling")
        except HttpError as error:
            status, payload = error.status, error.body
            problems = self.validator.errors_for(ERROR_SCHEMA, payload)
            if problems:
                self.validation_failures.append(f"{method} {path} error response: {problems}")
        data = json.dumps(payload).encode()
        with self._lock:
            self.requests.append(Recorded(method, path, query, body, status, authorization))
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times <= 0 or (fault.writes_only and method == "GET"):
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                return fault
            return None

    def _dispatch(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any, str]:
        for route_method, pattern, spec_path, handle in self.routes:
            match = pattern.fullmatch(path)
            if route_method != method or match is None:
                continue
            operation = self.validator.spec["paths"][spec_path][method.lower()]
            params = self._check_request(
                method, spec_path, operation, match.groupdict(), query, body
            )
            with self._lock:
                return 200, handle(params, body), spec_path
        raise HttpError(404, f"no route {method} {path}")

    def _check_request(
        self,
        method: str,
        spec_path: str,
        operation: dict[str, Any],
        path_params: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
    ) -> dict[str, Any]:
        """Validate parameters and body against the operation; return the typed parameters."""
        problems: list[str] = []
        declared: dict[tuple[str, str], dict[str, Any]] = {}
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = self.validator.spec["components"]["parameters"][
                    parameter["$ref"].rsplit("/", 1)[1]
                ]
            declared[parameter["in"], parameter["name"]] = parameter
        given = {("path", k): v for k, v in path_params.items()}
        for name, values in query.items():
            if len(values) != 1:
                problems.append(f"query parameter {name} repeated")
            given["query", name] = values[-1]
        params: dict[str, Any] = {}
        for (where, name), raw in given.items():
            parameter = declared.get((where, name))
            if parameter is None:
                problems.append(f"unknown {where} parameter {name!r}")
                continue
            value = self._coerce(parameter["schema"], raw)
            if value is None:
                problems.append(f"{where} parameter {name}={raw!r} does not match its schema")
            params[name] = value
        request_body = operation.get("requestBody")
        if request_body is None:
            if body is not None:
                problems.append("unexpected request body")
        elif body is None:
            if request_body.get("required"):
                problems.append("missing request body")
        else:
            pointer = _pointer(
                "paths",
                spec_path,
                method.lower(),
                "requestBody",
                "content",
                "application/json",
                "schema",
            )
            problems += self.validator.errors(pointer, body)
        if problems:
            self.validation_failures.append(f"{method} {spec_path} request: {problems}")
            raise HttpError(400, f"invalid request: {'; '.join(problems)}")
        return params

    def _coerce(self, schema: dict[str, Any], raw: str) -> Any:
        """A query/path string as the schema wants it (int, number or string), or None."""
        candidates: list[Any] = [raw]
        for convert in (int, float):
            with contextlib.suppress(ValueError):
                candidates.append(convert(raw))
        for candidate in candidates:
            if not self.validator.errors_for(schema, candidate):
                return candidate
        return None

    def _check_response(self, method: str, spec_path: str, payload: Any) -> None:
        pointer = _pointer(
            "paths",
            spec_path,
            method.lower(),
            "responses",
            "200",
            "content",
            "application/json",
            "schema",
        )
        problems = self.validator.errors(pointer, payload)
        if problems:
            self.validation_failures.append(f"{method} {spec_path} response: {problems}")

    # ---------------------------------------------------------------------- endpoints

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def _page(self, name: str, items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        limit = min(int(params.get("limit", 10)), self.max_limit)
        offset = int(params.get("offset", 0))
        page = items[offset : offset + limit]
        more = offset + len(page) < len(items)
        return {
            name: page,
            "limit": limit,
            "offset": offset,
            "count": len(page),
            "total": len(items),
            "hasMore": more,
            "nextOffset": offset + len(page) if more else None,
        }

    def _feature(self, key: str) -> Feature:
        feature = self.features.get(key)
        if feature is None:
            raise HttpError(404, f"Could not find feature with id {key}")
        return feature

    def _revision_json(self, feature: Feature, revision: Revision) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"frev_{revision.version}_{feature.key}",
            "featureId": feature.key,
            "baseVersion": revision.base_version,
            "version": revision.version,
            "comment": revision.comment,
            "date": revision.date,
            "status": revision.status,
            "createdBy": {"type": "api_key"},
            "defaultValue": feature.default_value,
            "rules": copy.deepcopy(revision.rules),
        }
        if revision.status == "published":
            out["publishedBy"] = {"type": "api_key"}
        return out

    def _feature_json(self, feature: Feature, with_revisions: str | None = None) -> dict[str, Any]:
        live = feature.revisions[feature.live]
        out: dict[str, Any] = {
            "id": feature.key,
            "dateCreated": feature.created,
            "dateUpdated": live.date,
            "archived": False,
            "description": "",
            "owner": "",
            "project": "",
            "valueType": feature.value_type,
            "defaultValue": feature.default_value,
            "tags": [],
            "rules": copy.deepcopy(live.rules),
            "environments": {
                env: {"enabled": on, "defaultValue": feature.default_value}
                for env, on in feature.environments.items()
            },
            "revision": {
                "id": f"frev_{live.version}_{feature.key}",
                "version": live.version,
                "comment": live.comment,
                "date": live.date,
            },
        }
        wanted = {"all": None, "drafts": ACTIVE_DRAFTS, "published": ("published",)}
        if with_revisions in wanted:
            statuses = wanted[with_revisions]
            out["revisions"] = [
                self._revision_json(feature, r)
                for r in feature.revisions.values()
                if statuses is None or r.status in statuses
            ]
        return out

    def _list_features(self, params: dict[str, Any], body: Any) -> Any:
        items = [self._feature_json(f) for f in self.features.values()]
        return self._page("features", items, params)

    def _get_feature(self, params: dict[str, Any], body: Any) -> Any:
        feature = self._feature(params["id"])
        return {"feature": self._feature_json(feature, params.get("withRevisions"))}

    def _draft(self, params: dict[str, Any], body: Any) -> Any:
        feature = self._feature(params["id"])
        version = max(feature.revisions) + 1
        feature.revisions[version] = Revision(
            version,
            feature.live,
            "draft",
            body.get("comment", ""),
            copy.deepcopy(feature.live_rules),
            _now(),
        )
        return {"revision": self._revision_json(feature, feature.revisions[version])}

    def _editable(self, params: dict[str, Any]) -> tuple[Feature, Revision]:
        feature = self._feature(params["id"])
        if not isinstance(params["version"], int):
            raise HttpError(400, "the fake supports integer revision versions only")
        revision = feature.revisions.get(params["version"])
        if revision is None:
            raise HttpError(404, f"revision {params['version']} not found")
        if revision.status not in ACTIVE_DRAFTS:
            raise HttpError(400, f"revision {revision.version} is {revision.status}, not a draft")
        return feature, revision

    def _apply_rule_fields(self, rule: dict[str, Any], fields: dict[str, Any]) -> None:
        """Copy Targeting Rule fields onto a stored (FeatureRuleV2) rule, as GrowthBook does."""
        for name, value in fields.items():
            if name == "savedGroups":
                for group in value:
                    for group_id in group["ids"]:
                        if group_id not in self.saved_groups:
                            raise HttpError(400, f"unknown saved group {group_id}")
                rule["savedGroupTargeting"] = [
                    {"matchType": g["match"], "savedGroups": list(g["ids"])} for g in value
                ]
            elif name in ("condition", "seed") and value == "":
                rule.pop(name, None)
            elif name != "type":
                rule[name] = copy.deepcopy(value)
        for name in ("savedGroupTargeting", "prerequisites"):
            if rule.get(name) == []:
                del rule[name]
        if rule["type"] == "rollout" and not rule.get("hashAttribute"):
            raise HttpError(400, "hashAttribute is required when coverage < 1")
        if rule["type"] == "force" and any(
            k in rule for k in ("coverage", "hashAttribute", "seed", "hashVersion")
        ):
            raise HttpError(400, "coverage, hashAttribute, seed, hashVersion need a rollout rule")

    def _add_rule(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        fields = body["rule"]
        if fields.get("type", "force") not in ("force", "rollout"):
            raise HttpError(400, "the fake adds force and rollout rules only")
        kind = fields.get("type") or ("rollout" if fields.get("coverage", 1) < 1 else "force")
        rule: dict[str, Any] = {
            "id": self._new_id("fr"),
            "description": "",
            "enabled": True,
            "type": kind,
        }
        rule["allEnvironments"] = False
        self._apply_rule_fields(rule, fields)
        revision.rules.append(rule)
        return {"revision": self._revision_json(feature, revision)}

    def _find_rule(self, revision: Revision, rule_id: str) -> dict[str, Any]:
        for rule in revision.rules:
            if rule["id"] == rule_id:
                return rule
        raise HttpError(404, f"rule {rule_id} not found in revision {revision.version}")

    def _update_rule(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        rule = self._find_rule(revision, params["ruleId"])
        fields = body["rule"]
        if "type" in fields and fields["type"] != rule["type"]:
            raise HttpError(400, "the rule type cannot be changed")
        self._apply_rule_fields(rule, fields)
        return {"revision": self._revision_json(feature, revision)}

    def _delete_rule(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        revision.rules.remove(self._find_rule(revision, params["ruleId"]))
        return {"revision": self._revision_json(feature, revision)}

    def _reorder(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        by_id = {r["id"]: r for r in revision.rules}
        ids = body["ruleIds"]
        if sorted(ids) != sorted(by_id) or len(set(ids)) != len(ids):
            raise HttpError(400, "ruleIds must contain exactly the revision's rule ids")
        revision.rules[:] = [by_id[i] for i in ids]
        return {"revision": self._revision_json(feature, revision)}

    def _publish(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        if revision.base_version != feature.live:
            gate = {
                "entityType": "feature",
                "id": feature.key,
                "version": revision.version,
                "type": "stale-base",
                "severity": "blocker",
                "messages": [f"draft is based on {revision.base_version}, live is {feature.live}"],
                "override": "ignoreWarnings",
                "requiresPermission": "bypassApprovals",
                "resolution": None,
            }
            raise HttpError(422, "the draft is out of date: rebase it first", gates=[gate])
        revision.status = "published"
        revision.date = _now()
        feature.live = revision.version
        return {"revision": self._revision_json(feature, revision)}

    def _discard(self, params: dict[str, Any], body: Any) -> Any:
        feature, revision = self._editable(params)
        revision.status = "discarded"
        return {"revision": self._revision_json(feature, revision)}

    def _list_experiments(self, params: dict[str, Any], body: Any) -> Any:
        return self._page("experiments", list(self.experiments.values()), params)

    def _get_experiment(self, params: dict[str, Any], body: Any) -> Any:
        experiment = self.experiments.get(params["id"])
        if experiment is None:
            raise HttpError(404, f"Could not find experiment {params['id']}")
        status = {"running": "Running", "stopped": "Stopped", "draft": "Draft"}[
            experiment["status"]
        ]
        return {"experiment": {**experiment, "enhancedStatus": {"status": status}}}

    def _list_groups(self, params: dict[str, Any], body: Any) -> Any:
        return self._page("savedGroups", list(self.saved_groups.values()), params)

    def _store_group(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("type", "list") != "list" or not body.get("attributeKey"):
            raise HttpError(400, "the fake stores list groups with an attributeKey only")
        now = _now()
        group = {
            "id": self._new_id("grp"),
            "type": "list",
            "dateCreated": now,
            "dateUpdated": now,
            "name": body["name"],
            "owner": "",
            "attributeKey": body["attributeKey"],
            "values": list(body.get("values", [])),
            "projects": list(body.get("projects", [])),
            "archived": False,
        }
        with self._lock:
            self.saved_groups[group["id"]] = group
        return group

    def _create_group(self, params: dict[str, Any], body: Any) -> Any:
        return {"savedGroup": copy.deepcopy(self._store_group(body))}

    def _update_group(self, params: dict[str, Any], body: Any) -> Any:
        group = self.saved_groups.get(params["id"])
        if group is None:
            raise HttpError(404, f"Could not find saved group {params['id']}")
        for name in ("name", "values", "projects", "owner"):
            if name in body:
                group[name] = copy.deepcopy(body[name])
        group["dateUpdated"] = _now()
        return {"savedGroup": copy.deepcopy(group)}

    # -------------------------------------------------------------------- SDK payload

    def _sdk_condition(self, rule: dict[str, Any]) -> dict[str, Any] | None:
        """The rule's condition and saved-group targeting as one SDK condition."""
        parts: list[dict[str, Any]] = []
        if rule.get("condition") and rule["condition"] != "{}":
            parts.append(json.loads(rule["condition"]))
        for targeting in rule.get("savedGroupTargeting", []):
            groups = [
                self.saved_groups[g] for g in targeting["savedGroups"] if g in self.saved_groups
            ]
            conditions = [{g["attributeKey"]: {"$inGroup": g["id"]}} for g in groups]
            if not conditions:
                continue
            if targeting["matchType"] == "all":
                parts += conditions
            elif targeting["matchType"] == "any":
                parts.append(conditions[0] if len(conditions) == 1 else {"$or": conditions})
            else:
                parts.append({"$nor": conditions})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def _sdk_rule(self, feature: Feature, rule: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {"id": rule["id"]}
        condition = self._sdk_condition(rule)
        if condition is not None:
            out["condition"] = condition
        if rule["type"] in ("force", "rollout"):
            out["force"] = _parse_value(rule["value"], feature.value_type)
            if rule["type"] == "rollout":
                out["coverage"] = rule["coverage"]
                out["hashAttribute"] = rule["hashAttribute"]
                out["hashVersion"] = rule.get("hashVersion", 2)
                if rule.get("seed"):
                    out["seed"] = rule["seed"]
            return out
        if rule["type"] != "experiment-ref":
            return None
        experiment = self.experiments[rule["experimentId"]]
        if experiment["status"] != "running":
            return None
        phase = experiment["phases"][-1]
        values = {v["variationId"]: v["value"] for v in rule["variations"]}
        weights = {s["variationId"]: s["weight"] for s in phase["trafficSplit"]}
        variations = experiment["variations"]
        out.update(
            key=experiment["trackingKey"],
            variations=[
                _parse_value(values[v["variationId"]], feature.value_type) for v in variations
            ],
            weights=[weights[v["variationId"]] for v in variations],
            coverage=phase["coverage"],
            hashAttribute=experiment["hashAttribute"],
            hashVersion=experiment["hashVersion"],
            seed=phase["seed"],
            meta=[{"key": v["key"], "name": v["name"]} for v in variations],
            phase=str(len(experiment["phases"]) - 1),
            name=experiment["name"],
        )
        return out


@pytest.fixture(name="fake_growthbook")
def fake_growthbook_fixture() -> Iterator[FakeGrowthBook]:
    """Fixture ``fake_growthbook``: a started fake; at teardown, fails the test if any request
    or response broke the spec.

    Use it with ``from tests.fake_growthbook import fake_growthbook_fixture  # noqa: F401``
    (the fixture registers under the name ``fake_growthbook``).
    """
    fake = FakeGrowthBook().start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.validation_failures, "\n".join(fake.validation_failures)
