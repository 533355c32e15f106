"""The embedded model, loaded once per test session (converted once per machine, then ~5 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
# ../shared beside the checkout, or the workplace's copy when CI checks out elsewhere
SHARED = next(
    (p for p in (_REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()),
    _REPO.parent / "shared" / "data",
)
DSTC11 = SHARED / "dstc11-insurance" / "utterances.jsonl"

INSURANCE_INTENTS = sorted({json.loads(line)["label"] for line in DSTC11.read_text().splitlines() if line.strip()})


def chat_config(labels: list[str], multiple: bool) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    mode = "multiple" if multiple else "single"
    return f"""<View>
  <Paragraphs name="chat" value="$dialogue" layout="dialogue" nameKey="author" textKey="text"/>
  <TextArea name="prompt" toName="chat" rows="4" editable="true" maxSubmissions="1"/>
  <TextArea name="response" toName="chat" rows="4" editable="true" maxSubmissions="1"/>
  <Choices name="intent" toName="chat" choice="{mode}">{choices}</Choices>
</View>"""


def dstc11_dialogues(n: int) -> list[dict]:
    """Finance-support style dialogues from real DSTC11 insurance customer turns."""
    rows = [json.loads(line) for line in DSTC11.read_text().splitlines() if line.strip()]
    out = []
    for row in rows[:n]:
        out.append(
            {
                "dialogue": [
                    {"author": "agent", "text": "Thank you for calling, how can I help you today?"},
                    {"author": "customer", "text": row["text"]},
                ]
            }
        )
    return out


@pytest.fixture(scope="session")
def embedded_engine():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from constraints.local import load_engine
    from service.settings import Settings

    return load_engine(Settings(warmup=False))
