"""Label Studio tasks and the prompt-centric labeling config built from the dstc11-insurance utterances.

The data set holds single customer utterances (`{"id","text","label"}`), no agent turns. A task is a
two-turn dialogue: the customer's utterance, then a neutral agent acknowledgement that does not hint at
the intent, so the intent is decided by the customer's words alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

_REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    _REPO.parent / "shared" / "data" / "dstc11-insurance" / "utterances.jsonl",
    Path("/work/shared/data/dstc11-insurance/utterances.jsonl"),
]
AGENT_REPLY = "Thanks for reaching out. Let me look into that for you."


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str
    label: str


def utterances_path() -> Path:
    if "PROMPTER_DSTC11_PATH" in os.environ:
        return Path(os.environ["PROMPTER_DSTC11_PATH"])
    for path in _CANDIDATES:
        if path.exists():
            return path
    raise FileNotFoundError(f"dstc11-insurance utterances not found in {[str(p) for p in _CANDIDATES]}")


def load_utterances(path: Path | None = None) -> list[Utterance]:
    lines = (path or utterances_path()).read_text().splitlines()
    return [Utterance(**json.loads(line)) for line in lines if line.strip()]


def intents(utterances: list[Utterance]) -> list[str]:
    """The intent labels, sorted, each once."""
    return sorted({u.label for u in utterances})


def one_per_intent(utterances: list[Utterance], count: int) -> list[Utterance]:
    """The first utterance of each of the first `count` intents (sorted): distinct, deterministic."""
    first: dict[str, Utterance] = {}
    for utterance in utterances:
        first.setdefault(utterance.label, utterance)
    return [first[label] for label in sorted(first)[:count]]


def dialogue_task(utterance: Utterance) -> dict[str, Any]:
    """A Label Studio task (`{"data": ...}`); the gold label stays out of the data the model sees."""
    return {
        "data": {
            "dialogue": [
                {"author": "customer", "text": utterance.text},
                {"author": "agent", "text": AGENT_REPLY},
            ],
            "utterance_id": utterance.id,
        }
    }


def prompt_centric_config(labels: list[str]) -> str:
    """The labeling config: a dialogue, an editable prompt, the model's response, and the intents."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return f"""<View>
  <Paragraphs name="chat" value="$dialogue" layout="dialogue" nameKey="author" textKey="text"/>
  <TextArea name="prompt" toName="chat" rows="4" editable="true" maxSubmissions="1" showSubmitButton="false"/>
  <TextArea name="response" toName="chat" rows="4" editable="true" maxSubmissions="1"/>
  <Choices name="intent" toName="chat" choice="multiple">
{choices}
  </Choices>
</View>"""


def prompt_context(text: str) -> dict[str, Any]:
    """The `context` the labeling UI sends for interactive preannotation from the prompt TextArea."""
    return {
        "result": [
            {"from_name": "prompt", "to_name": "chat", "type": "textarea", "value": {"text": [text]}},
        ]
    }
