"""JSON Schema of formulas.yaml, for editor completion (yaml-language-server)."""

from __future__ import annotations

import json

from .model import Sheet


def json_schema() -> str:
    schema = Sheet.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sheetgen formulas.yaml"
    schema["description"] = "The ML cheat sheet source: sheet settings and sections of entries."
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
