"""Speed of span tagging on the embedded model: interactive p50 (one-task calls) and batch tasks/s.

``python -m service.bench.spans [--tasks 40] [--interactive 10] [--corrections 100]``: a Labels config over the
NLU++ hotel slots (``nlupp-hotels/slots.jsonl``), the prompt's pool the first ``--corrections`` corrected tasks
(k=8 nearest as demonstrations, as ``prompter simulate`` does), timed through the one decision path on
held-out texts. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from agent.simulate_spans import CONTROL, pool, sample_spans
from constraints.engines import load_engine
from service.demonstrations import compose
from service.labeling import labels_config, parse_config
from service.predictor import Prompt, label_tasks
from service.prompting import default_prompt
from service.settings import settings

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nlupp-hotels" / "slots.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench.spans", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DATA if DATA.exists() else Path("/work/shared/data/nlupp-hotels/slots.jsonl")
    )
    parser.add_argument("--tasks", type=int, default=40, help="batch size timed for tasks/s")
    parser.add_argument("--interactive", type=int, default=10, help="one-task calls timed for the p50")
    parser.add_argument("--corrections", type=int, default=100)
    args = parser.parse_args(argv)
    train, heldout = sample_spans(args.data, 200, args.corrections, 0)
    labels = sorted({x for r in train + heldout for *_, x in r.spans})
    schema = parse_config(labels_config(labels, CONTROL))
    prompt = Prompt(compose(default_prompt(schema), schema, retrieval=True), {"pool": pool(train), "k": 8})
    engine = load_engine(settings)
    tasks = [{"id": i + 1, "data": {"text": r.text}} for i, r in enumerate(heldout)]
    label_tasks(engine, schema, tasks[:2], prompt)  # first-call costs (prefix cache, MiniLM)
    one = []
    for task in tasks[2 : 2 + args.interactive]:
        started = time.perf_counter()
        label_tasks(engine, schema, [task], prompt)
        one.append(time.perf_counter() - started)
    batch = tasks[2 + args.interactive : 2 + args.interactive + args.tasks]
    started = time.perf_counter()
    preds = label_tasks(engine, schema, batch, prompt)
    took = time.perf_counter() - started
    spans = sum(len(p.labels[CONTROL]) for p in preds)
    print(f"model {engine.model_id}, {len(labels)} labels, pool {len(train)} corrections (k=8)")
    print(f"interactive p50 {statistics.median(one):.2f} s (min {min(one):.2f}, max {max(one):.2f}, n={len(one)})")
    print(f"batch {len(batch) / took:.2f} tasks/s ({len(batch)} tasks in {took:.1f} s, {spans} spans)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
