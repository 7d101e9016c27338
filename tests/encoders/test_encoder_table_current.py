"""docs/encoder_table.md is what the registry generates today (regenerate: see smp_like/encoders/catalogue.py)."""

from pathlib import Path

from smp_like.encoders import encoders
from smp_like.encoders.catalogue import encoder_rows, encoder_table

TABLE = Path(__file__).resolve().parents[2] / "docs" / "encoder_table.md"


def test_committed_encoder_table_is_current():
    expected = encoder_table()
    assert TABLE.read_text() == expected, (
        "docs/encoder_table.md is stale: run `python -m smp_like.encoders.catalogue --write docs/encoder_table.md`"
    )


def test_rows_are_computed_from_the_encoders():
    (row,) = encoder_rows(["resnet18"])
    assert round(row["params_m"], 1) == 11.2  # torchvision's ResNet-18 without its fc layer: 11.18M
    assert row["tags"] == sorted(encoders["resnet18"]["pretrained_settings"])
    assert row["spatial_dims"] == (2, 3) and row["scriptable"] is True
