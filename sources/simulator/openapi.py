"""OpenAPI 3.0 documents of the source API contract, one per source system.

Built from the record dataclasses (``dataclasses.fields`` + ``metadata["api"]`` give the
source field names) and the entity-set table, so the published contract cannot drift
from what the simulator serves and the connectors parse.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from typing import Any

from ..records import Record
from .world import ENTITY_SETS, SYSTEMS

_TITLES = {
    "erp": "ERP — sales orders and customers",
    "mes": "MES — production orders and work centres",
    "wms": "WMS — component availability and outbound deliveries",
    "qms": "QMS — inspection lots",
    "tms": "TMS — shipments and tracking",
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _schema_name(record_type: type[Record]) -> str:
    return record_type.__name__


def _type_schema(tp: Any, refs: set[type[Record]]) -> tuple[dict[str, Any], bool]:
    """JSON schema of a type hint, and whether it is nullable."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        schema, _ = _type_schema(args[0], refs)
        return schema, True
    if origin is list:
        inner, _ = _type_schema(typing.get_args(tp)[0], refs)
        return {"type": "array", "items": inner}, False
    if tp is str:
        return {"type": "string"}, False
    if tp is bool:
        return {"type": "boolean"}, False
    if tp is int:
        return {"type": "integer"}, False
    if tp is float:
        return {"type": "number"}, False
    if tp is dt.datetime:
        return {"type": "string", "format": "date-time"}, False
    if tp is dt.date:
        return {"type": "string", "format": "date"}, False
    if isinstance(tp, type) and issubclass(tp, Record):
        refs.add(tp)
        return {"$ref": f"#/components/schemas/{_schema_name(tp)}"}, False
    return {}, False


def record_schema(record_type: type[Record], refs: set[type[Record]] | None = None) -> dict[str, Any]:
    """The JSON schema of one record class in source field names."""
    refs = set() if refs is None else refs
    hints = typing.get_type_hints(record_type)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(record_type):
        if "api" not in f.metadata:
            continue
        name = f.metadata["api"]
        schema, nullable = _type_schema(hints[f.name], refs)
        if nullable:
            # A $ref cannot carry siblings in OpenAPI 3.0; wrap it.
            schema = {"allOf": [schema], "nullable": True} if "$ref" in schema else {**schema, "nullable": True}
        properties[name] = schema
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if record_type.__doc__:
        out["description"] = record_type.__doc__.strip().splitlines()[0]
    return out


def _parameters(entity_set_name: str, filter_fields: tuple[str, ...]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": field,
            "in": "query",
            "required": False,
            "description": f"Comma-separated {field} values (at most 1,000); records matching any of them."
            + (" The key." if i == 0 else ""),
            "schema": {"type": "string"},
            "style": "form",
            "explode": False,
        }
        for i, field in enumerate(filter_fields)
    ]
    params.append(
        {
            "name": "changedSince",
            "in": "query",
            "required": False,
            "description": "Records with LastChangeDateTime >= this value.",
            "schema": {"type": "string", "format": "date-time"},
        }
    )
    if entity_set_name == "A_SalesOrder":
        params.append(
            {
                "name": "confirmedBefore",
                "in": "query",
                "required": False,
                "description": "Sales orders with ConfirmedDeliveryDate < this date.",
                "schema": {"type": "string", "format": "date"},
            }
        )
    params += [
        {
            "name": "$top",
            "in": "query",
            "required": False,
            "description": "Page size (default 100; a look-up by field values without $top returns all).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        {
            "name": "$skiptoken",
            "in": "query",
            "required": False,
            "description": "The nextSkipToken of the previous page.",
            "schema": {"type": "string"},
        },
    ]
    return params


def build_openapi(system: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one source system (``erp``, ``mes``, ...)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}")
    refs: set[type[Record]] = set()
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for es in ENTITY_SETS:
        if es.system != system:
            continue
        ref = {"$ref": f"#/components/schemas/{_schema_name(es.record_type)}"}
        refs.add(es.record_type)
        paths[f"/{es.name}"] = {
            "get": {
                "operationId": f"list_{es.name}",
                "summary": f"Read {es.name}: batch look-up by {', '.join(es.filter_fields)}, or a paged listing.",
                "parameters": _parameters(es.name, es.filter_fields),
                "responses": {
                    "200": {
                        "description": "Matching records sorted by key.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["value", "count"],
                                    "properties": {
                                        "value": {"type": "array", "items": ref},
                                        "count": {"type": "integer", "description": "Matches over all pages."},
                                        "nextSkipToken": {"type": "string", "nullable": True},
                                    },
                                }
                            }
                        },
                    },
                    "400": {
                        "description": "Unknown field, bad date or bad $top.",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                    "404": {
                        "description": "Unknown entity set.",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                },
            }
        }
    # Nested records (items, usage decision, tracking events) become schemas too.
    done: set[type[Record]] = set()
    while refs - done:
        record_type = min(refs - done, key=lambda t: t.__name__)
        schemas[_schema_name(record_type)] = record_schema(record_type, refs)
        done.add(record_type)
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"ordergraph source API: {_TITLES[system]}",
            "version": "1.0.0",
            "description": "Source API contract (sources/API.md), served by the simulated plant.",
        },
        "servers": [{"url": f"/{system}"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
