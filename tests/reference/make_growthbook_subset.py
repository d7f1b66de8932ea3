"""Regenerate ``tests/reference/growthbook/`` from GrowthBook's OpenAPI document and SDK cases.

Run from the repository root, with the paths of the two original files (see the README in
``tests/reference/growthbook/`` for where they come from)::

    .venv/bin/python tests/reference/make_growthbook_subset.py OPENAPI_YAML CASES_JSON

``openapi-subset.json`` keeps the operations in :data:`OPERATIONS` (those the fake GrowthBook
of ``tests/fake_growthbook.py`` serves and ``rollout/growthbook/client.py`` calls) and every
component they reference, directly or not (the ``$ref`` closure), plus :data:`EXTRA_SCHEMAS`.
Prose (``description`` but a Response's, ``summary``, ``example(s)``, ``tags``) and ``x-``
extensions are dropped; every validation keyword is kept as it is. ``sdk-hash-cases.json``
keeps the sections of ``cases.json`` in :data:`SDK_SECTIONS`. Both are written with sorted
keys, so a re-run on the same input gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "growthbook"
REVISION = "/v2/features/{id}/revisions/{version}"
OPERATIONS = (
    ("get", "/v2/features"),
    ("get", "/v2/features/{id}"),
    ("post", "/v2/features/{id}/revisions"),
    ("post", REVISION + "/rules"),
    ("post", REVISION + "/rules/reorder"),
    ("put", REVISION + "/rules/{ruleId}"),
    ("delete", REVISION + "/rules/{ruleId}"),
    ("post", REVISION + "/publish"),
    ("post", REVISION + "/discard"),
    ("get", "/v1/experiments"),
    ("get", "/v1/experiments/{id}"),
    ("get", "/v1/saved-groups"),
    ("post", "/v1/saved-groups"),
    ("post", "/v1/saved-groups/{id}"),
)
# Schemas the tests address by name rather than through an operation.
EXTRA_SCHEMAS = ("FeatureRuleV2", "gates")
SDK_SECTIONS = ("specVersion", "hash")

OPERATION_FIELDS = ("operationId", "parameters", "requestBody", "responses")
PROSE = frozenset({"description", "summary", "example", "examples"})
# Keywords whose value is data (copied as is), and those whose value maps names to objects.
DATA = frozenset({"const", "default", "enum"})
NAME_MAPS = frozenset(
    {"$defs", "content", "dependentSchemas", "headers", "parameters", "paths"}
    | {"patternProperties", "properties", "responses", "schemas"}
)


def facts(node: Any, refs: set[str], keep: frozenset[str] = frozenset()) -> Any:
    """``node`` without prose or ``x-`` extensions; adds each ``$ref`` met to ``refs``.

    ``keep`` names prose fields to keep at this level (a Response's required ``description``).
    """
    if isinstance(node, list):
        return [facts(item, refs) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or (key in PROSE and key not in keep):
            continue
        if key == "$ref":
            refs.add(value)
        if key in DATA:
            out[key] = value
        elif key in NAME_MAPS and isinstance(value, dict):
            inner = frozenset({"description"}) if key == "responses" else frozenset()
            out[key] = {name: facts(item, refs, inner) for name, item in value.items()}
        else:
            out[key] = facts(value, refs)
    return out


def component_of(ref: str) -> tuple[str, str]:
    """The (kind, name) of the component a local ``$ref`` points into."""
    parts = ref.split("/")
    if parts[:2] != ["#", "components"] or len(parts) < 4:
        raise ValueError(f"not a reference to a component: {ref}")
    return parts[2], parts[3].replace("~1", "/").replace("~0", "~")


def openapi_subset(spec: dict[str, Any]) -> dict[str, Any]:
    """The operations in :data:`OPERATIONS` with the closure of the components they use."""
    refs = {f"#/components/schemas/{name}" for name in EXTRA_SCHEMAS}
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = spec["paths"][path][method]
        kept = {k: operation[k] for k in OPERATION_FIELDS if k in operation}
        paths.setdefault(path, {})[method] = facts(kept, refs)
    components: dict[str, dict[str, Any]] = {}
    done: set[str] = set()
    while pending := refs - done:
        ref = min(pending)
        done.add(ref)
        kind, name = component_of(ref)
        if name not in components.get(kind, {}):
            components.setdefault(kind, {})[name] = facts(spec["components"][kind][name], refs)
    info = {"title": spec["info"]["title"], "version": spec["info"]["version"]}
    return {"openapi": spec["openapi"], "info": info, "paths": paths, "components": components}


def write(path: Path, text: str) -> None:
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


def cases_json(sections: dict[str, Any]) -> str:
    """The sections as a JSON object with sorted keys, one test case a line."""
    parts = []
    for key in sorted(sections):
        value = sections[key]
        if isinstance(value, list):
            rows = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in value)
            parts.append(f" {json.dumps(key)}: [\n{rows}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path, help="GrowthBook's openapi.yaml (or .json)")
    parser.add_argument("cases", type=Path, help="GrowthBook's cross-SDK cases.json")
    args = parser.parse_args()
    with args.openapi.open(encoding="utf-8") as f:
        spec = yaml.load(f, Loader=yaml.CSafeLoader)
    cases = json.loads(args.cases.read_text(encoding="utf-8"))
    OUT.mkdir(exist_ok=True)
    subset = openapi_subset(spec)
    write(OUT / "openapi-subset.json", json.dumps(subset, indent=1, sort_keys=True))
    write(OUT / "sdk-hash-cases.json", cases_json({k: cases[k] for k in SDK_SECTIONS}))


if __name__ == "__main__":
    main()
