"""Extract the example payloads from the vendors' spec documents (``../shared/specs``).

The documents themselves are not part of the repository; the JSON examples extracted
from them live in ``tests/data/specs`` (see ``spec_examples.py``).  This module is what
``test_spec_data.py`` uses to check that data against the documents when they are at hand,
and what regenerates it (``python tests/spec_extract.py``).  The files are vendor
documentation copied verbatim, so known blemishes are cleaned here: stray
mis-encoded non-breaking spaces ("¬†") in spec 003's examples, and the productViewed
example of spec 001, whose ``product`` value ends in a stray ``]}``, and spec 000's
custom person event example, which closes one brace too many.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = Path(os.environ.get("CDPTRACK_SPECS_DIR", ROOT.parent / "shared" / "specs"))

TRACKER = "003_f23a8d765b88a799.txt"
EVENTS_V1 = "001_f6fb1c34826849a2.txt"
CUSTOMERIO = "002_c3fb44fd05fa22e7.txt"
ORANGEPILL = "000_1d9b8b8a8bb56364.txt"


def spec_text(name: str) -> str:
    """The document's text; skips the calling test, saying why, when it is not at hand."""
    path = SPECS_DIR / name
    if not path.exists():
        pytest.skip(f"vendor spec document {name} not found in {SPECS_DIR} "
                    "(set CDPTRACK_SPECS_DIR); the examples in tests/data/specs are used as-is")
    return path.read_text(encoding="utf-8")


@cache
def tracker_examples() -> dict[str, dict[str, Any]]:
    """Spec 003's full examples keyed by ``GeneralInfo.eventName``."""
    text = spec_text(TRACKER).replace("¬†", " ")
    out = {}
    for block in re.findall(r"```(?:json)?\n(.*?)```", text, re.S):
        data = json.loads(block)
        if "GeneralInfo" in data:
            out[data["GeneralInfo"]["eventName"]] = data
    return out


@cache
def events_v1_examples() -> list[dict[str, Any]]:
    """Spec 001's request bodies, in document order (the JSON is not fenced there)."""
    text = spec_text(EVENTS_V1).replace(
        '\\"someProductProperty\\":[\\"green\\"]}]}"', '\\"someProductProperty\\":[\\"green\\"]}"'
    )
    bodies = []
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                candidate = text[start : index + 1]
                if '"eventTypeKey"' in candidate:
                    bodies.append(json.loads(candidate))
    return bodies


@cache
def customerio_openapi() -> dict[str, Any]:
    return dict(json.loads(spec_text(CUSTOMERIO)))


@cache
def orangepill_examples() -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """Spec 000's cURL examples: title → (method, url, body)."""
    text = spec_text(ORANGEPILL)
    out = {}
    sections = re.split(r"^## ", text, flags=re.M)
    for section in sections[1:]:
        title = section.splitlines()[0].strip()
        match = re.search(
            r"curl --location --request (\w+) '([^']+)'.*?(?:--data-raw '(.*?)')?\n```",
            section, re.S,
        )
        if match:
            # raw_decode: the custom-event example closes one brace too many.
            raw = match.group(3)
            body = json.JSONDecoder().raw_decode(raw.strip())[0] if raw else None
            out[title] = (match.group(1), match.group(2), body)
    return out


def write_data(data_dir: Path = ROOT / "tests" / "data" / "specs") -> None:
    """Regenerate the JSON example files from the documents."""
    files = {
        "yespo_tracker_examples.json": tracker_examples(),
        "yespo_events_examples.json": events_v1_examples(),
        "orangepill_examples.json": {k: list(v) for k, v in orangepill_examples().items()},
    }
    for name, data in files.items():
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        (data_dir / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_data()
