"""What every benchmark ends with: its figures as one JSON object, printed and optionally saved."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: Path | None) -> dict:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return result
