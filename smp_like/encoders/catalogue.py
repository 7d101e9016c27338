"""The encoder table of the docs, generated from the registry (``docs/encoder_table.md``).

Regenerate with ``python -m smp_like.encoders.catalogue --write docs/encoder_table.md``; a test checks that the
committed file is current. Every column is computed, not typed in: parameter counts from an encoder built on the
``meta`` device (no memory, no weights), weight tags from the registry entry, 2D/3D from the entry's
``spatial_dims``, and "scriptable" by actually running ``torch.jit.script`` on the encoder.
"""

import argparse
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import torch

HEADER = """# Encoders

Generated from the registry by `python -m smp_like.encoders.catalogue --write docs/encoder_table.md` (a test
keeps it current). Parameters are those of the encoder at depth 5 with 3 input channels; weights are the tags
`encoder_weights` accepts (each a `smp-hub/<name>.<tag>` repository at SMP's pinned revision); 3D encoders take
`spatial_dims=3` (and anisotropic `strides`, see docs/encoders.md); "scriptable" means `torch.jit.script` compiles
the encoder. Any timm model also works as `tu-<timm name>` (2D).

| Encoder | Params (M) | Weights | 2D/3D | Scriptable |
| --- | ---: | --- | --- | --- |
"""


def _scriptable(encoder: torch.nn.Module) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script's own deprecation notice
            torch.jit.script(encoder)
    except Exception:  # any compilation failure means "no" in the table
        return False
    return True


def encoder_rows(names: Optional[List[str]] = None) -> List[Dict[str, object]]:
    """One row per registered encoder: name, parameter count, tags, spatial dims, scriptability."""
    from smp_like.encoders import encoders, get_encoder

    rows = []
    for name in names if names is not None else list(encoders):
        entry = encoders[name]
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            encoder = get_encoder(name)
        rows.append(
            {
                "name": name,
                "params_m": sum(p.numel() for p in encoder.parameters()) / 1e6,
                "tags": sorted(entry.get("pretrained_settings", {})),
                "spatial_dims": tuple(entry.get("spatial_dims", (2,))),
                "scriptable": _scriptable(encoder),
            }
        )
    return rows


def encoder_table(names: Optional[List[str]] = None) -> str:
    """The markdown page (header and table)."""
    lines = [HEADER.rstrip("\n")]
    for row in encoder_rows(names):
        dims = "2D, 3D" if 3 in row["spatial_dims"] else "2D"
        tags = ", ".join(row["tags"]) or "-"
        scriptable = "yes" if row["scriptable"] else "no"
        lines.append(f"| `{row['name']}` | {row['params_m']:.1f} | {tags} | {dims} | {scriptable} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    page = encoder_table()
    if args.write is None:
        print(page, end="")
    else:
        args.write.write_text(page)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
