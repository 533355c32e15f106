"""How every engine turns a ``Query`` into tokens, the same way token for token: the chat template (if the
tokenizer has one) wraps ``prefix + body``, then the cue starts the answer; the answer lead sits between the
cue and a label (a newline for base models, nothing after a chat template's assistant turn)."""

from __future__ import annotations

from constraints.base import Query

MARKER = "\x00PROMPTER\x00"


class ChatTokens:
    """Mixed into an engine that has ``self.tokenizer``; ``init_tokens`` once in ``__init__``."""

    tokenizer: object

    def init_tokens(self, answer_lead: str) -> None:
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.lead = "" if self.chat else answer_lead
        self._chat_parts = self._split_chat_template() if self.chat else ("", "")

    def encode(self, text: str, special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def _split_chat_template(self) -> tuple[str, str]:
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": MARKER}], tokenize=False, add_generation_prompt=True
        )
        before, after = text.split(MARKER)
        return before, after

    def prefix_ids(self, query: Query) -> list[int]:
        """The shared, cacheable part: the template's opening and the query's prefix (BOS added once)."""
        text = self._chat_parts[0] + query.prefix
        bos = self.tokenizer.bos_token
        return self.encode(text, special=not (bos and text.startswith(bos)))

    def body_ids(self, query: Query, cue: bool = True) -> list[int]:
        text = query.body + self._chat_parts[1]
        return self.encode(text + query.cue if cue else text)

    def prompt_ids(self, query: Query) -> list[int]:
        return self.prefix_ids(query) + self.body_ids(query)

    def full_text(self, query: Query) -> str:
        """The whole input as text, for tokenizers that add BOS themselves (outlines, HTTP engines)."""
        text = self._chat_parts[0] + query.prefix + query.body + self._chat_parts[1] + query.cue
        bos = self.tokenizer.bos_token
        return text[len(bos) :] if bos and text.startswith(bos) else text
