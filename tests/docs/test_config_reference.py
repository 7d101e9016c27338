"""docs/config_reference.md is generated from the config schema, complete and current (issue 19)."""

import typing
from pathlib import Path

from smp_like.training.config import TrainConfig
from smp_like.training.config_reference import DESCRIPTIONS, config_reference, config_rows, format_type

PAGE = Path(__file__).resolve().parents[2] / "docs" / "config_reference.md"


def _schema_keys(model, prefix=""):
    # An independent walk over pydantic's JSON schema (not model_fields): every property, nested objects followed.
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"].split("/")[-1], False
            for key in ("anyOf", "allOf", "oneOf"):
                for sub in node.get(key, []):
                    yield from refs(sub)
            if "items" in node:
                for name, _ in refs(node["items"]):
                    yield name, True

    seen_defs = set()

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            key = f"{path}.{name}" if path else name
            yield key
            for ref, in_list in refs(prop):
                if ref in seen_defs:
                    continue
                seen_defs.add(ref)
                yield from walk(defs[ref], key + ("[]" if in_list else ""))

    return list(walk(schema, prefix))


def test_committed_page_is_current():
    assert PAGE.read_text(encoding="utf-8") == config_reference(), (
        "docs/config_reference.md is stale: run `python -m smp_like.training.config_reference --write "
        "docs/config_reference.md`"
    )


def test_every_schema_key_is_listed_with_a_description():
    rows = config_rows()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    assert set(_schema_keys(TrainConfig)) == set(keys)
    undocumented = [r["key"] for r in rows if not r["description"].strip()]
    assert not undocumented, f"add a description (Field(description=...) or DESCRIPTIONS) for {undocumented}"
    assert not set(DESCRIPTIONS) - set(keys), f"DESCRIPTIONS names keys the schema lacks: {set(DESCRIPTIONS) - set(keys)}"


def test_rows_carry_the_schema_defaults_and_types():
    rows = {r["key"]: r for r in config_rows()}
    assert rows["data"]["default"] == "required" and rows["data.classes"]["default"] == "required"
    assert rows["optimizer.lr"]["default"] == f"`{TrainConfig.model_fields['optimizer'].default_factory().lr}`"
    assert rows["loss.terms"]["default"] == "`[CrossEntropy, Dice]`"
    assert rows["loss.terms[].weight"]["type"] == "float"
    assert rows["seed"]["type"] == "int | null"
    assert format_type(typing.Literal["max", "min"]) == '"max" | "min"'
    assert format_type(typing.Optional[typing.Tuple[int, int]]) == "[int, int] | null"
