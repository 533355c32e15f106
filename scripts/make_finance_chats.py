"""Build service/sample_data/finance_chats.json: 20 short support chats from dstc11-insurance customer turns.

Run once by hand (`python scripts/make_finance_chats.py`); the output is committed. Deterministic: the same
input gives the same file. Each chat is one or two customer turns (two different intents in every fourth
chat, so `choice="multiple"` has something to find) answered by neutral agent turns that do not name the
intent. The gold intents stay out of the task data; `source_ids` points back to the utterances, and
finance_chats_answers.json holds them apart (`prompter demo --annotate` plays the annotator with them).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SOURCE = Path("/work/shared/data/dstc11-insurance/utterances.jsonl")
TARGET = Path(__file__).resolve().parents[1] / "service" / "sample_data" / "finance_chats.json"
ANSWERS = TARGET.with_name("finance_chats_answers.json")
MORE = TARGET.with_name("finance_chats_more.json")  # `prompter demo --annotate` adds these: enough to prove a gain
INTENTS = [
    "PayBill",
    "CheckAccountBalance",
    "CheckPaymentStatus",
    "ReportBillingIssue",
    "CancelAutomaticBilling",
    "UpdatePaymentPreference",
    "GetQuote",
    "FileClaim",
]
AGENT_OPENERS = [
    "Thanks for reaching out. Let me look into that for you.",
    "Sure, I can help with that. One moment please.",
    "Of course. Let me pull up your account.",
    "Happy to help. Give me a second to check.",
]
AGENT_SECOND = "Noted, I'll take care of that as well."
CHATS = 20
MORE_CHATS = 40


def chat(i: int, by_intent: dict[str, list[dict]]) -> dict:
    """Chat ``i``: its first intent in turn, a second one in every fourth chat; utterances popped from the pools."""
    first = INTENTS[i % len(INTENTS)]
    turns = [by_intent[first].pop()]
    if i % 4 == 3:
        second = INTENTS[(i * 3 + 1) % len(INTENTS)]
        second = second if second != first else INTENTS[(i + 1) % len(INTENTS)]
        turns.append(by_intent[second].pop())
    dialogue = [{"author": "customer", "text": turns[0]["text"]}, {"author": "agent", "text": AGENT_OPENERS[i % 4]}]
    if len(turns) == 2:
        dialogue += [{"author": "customer", "text": turns[1]["text"]}, {"author": "agent", "text": AGENT_SECOND}]
    return {"data": {"dialogue": dialogue, "source_ids": ", ".join(t["id"] for t in turns)}}


def main(source: Path = SOURCE) -> int:
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    by_intent = {intent: [r for r in rows if r["label"] == intent] for intent in INTENTS}
    rng = random.Random(11)
    for pool in by_intent.values():
        rng.shuffle(pool)
    tasks = [chat(i, by_intent) for i in range(CHATS)]
    more = [chat(i, by_intent) for i in range(CHATS, CHATS + MORE_CHATS)]  # the same pools, never an utterance twice
    TARGET.write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
    MORE.write_text(json.dumps(more, indent=1, ensure_ascii=False) + "\n")
    label = {r["id"]: r["label"] for r in rows}
    answers = {
        t["data"]["source_ids"]: sorted({label[i] for i in t["data"]["source_ids"].split(", ")}) for t in tasks + more
    }
    ANSWERS.write_text(json.dumps(answers, indent=1) + "\n")
    print(f"wrote {len(tasks)} chats to {TARGET}, {len(more)} to {MORE}, their intents to {ANSWERS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:])))
