"""Token tries: many continuations of one prompt, scored in a single forward pass.

Every continuation (a label's tokens plus a terminator) is a path in
the trie. The scorer feeds all trie nodes at once with a tree attention mask, so shared tokens are
computed once and each node sees only the prompt and its ancestors. Logits are computed only where a
``Readout`` asks for them, and only for the token ids it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROOT = -1  # the last prompt token


@dataclass(frozen=True)
class Readout:
    """Log-probabilities over ``token_ids`` (renormalised among them) at ``node`` (ROOT = end of prompt)."""

    node: int
    token_ids: tuple[int, ...]


@dataclass
class TokenTrie:
    tokens: list[int] = field(default_factory=list)  # token id of each node
    parents: list[int] = field(default_factory=list)  # parent node index, ROOT for first tokens
    depths: list[int] = field(default_factory=list)  # 1 for the first token after the prompt
    children: dict[int, dict[int, int]] = field(default_factory=dict)  # node -> token id -> child node
    ends: list[int] = field(default_factory=list)  # last node of each inserted sequence, insertion order

    def insert(self, seq: list[int]) -> int:
        if not seq:
            raise ValueError("cannot insert an empty token sequence")
        node = ROOT
        for tok in seq:
            nxt = self.children.setdefault(node, {}).get(tok)
            if nxt is None:
                nxt = len(self.tokens)
                self.tokens.append(tok)
                self.parents.append(node)
                self.depths.append(1 if node == ROOT else self.depths[node] + 1)
                self.children[node][tok] = nxt
            node = nxt
        self.ends.append(node)
        return node

    def __len__(self) -> int:
        return len(self.tokens)

    def ancestors(self, node: int) -> list[int]:
        """``node`` and its ancestors, nearest first (ROOT excluded)."""
        out = []
        while node != ROOT:
            out.append(node)
            node = self.parents[node]
        return out


@dataclass
class ChoiceTrie:
    """Single choice: each label is a path; a label's probability is the product of the
    renormalised branch probabilities along its path (what constrained sampling draws from).

    ``trie`` holds only the nodes the forward pass needs: branch points and their ancestors. A label's
    tokens after its last branch point decide nothing (their probability is 1 under the constraint), so
    they are never computed; for 77 Banking77 intents this drops most of the trie.
    """

    trie: TokenTrie  # pruned: what the scorer feeds; readouts index into it
    readouts: list[Readout]
    # per label: (readout index, position of the chosen token in that readout) along its path
    paths: list[list[tuple[int, int]]]

    @classmethod
    def build(cls, sequences: list[list[int]]) -> ChoiceTrie:
        trie = TokenTrie()
        for seq in sequences:
            trie.insert(seq)
        if len(set(trie.ends)) != len(trie.ends):
            raise ValueError("two labels have the same token sequence")
        readouts: list[Readout] = []
        at: dict[int, int] = {}
        for node, kids in trie.children.items():
            if len(kids) > 1:
                at[node] = len(readouts)
                readouts.append(Readout(node, tuple(kids)))
        paths = []
        for end in trie.ends:
            path = []
            for node in reversed(trie.ancestors(end)):
                parent = trie.parents[node]
                if parent in at:
                    r = at[parent]
                    path.append((r, readouts[r].token_ids.index(trie.tokens[node])))
            paths.append(path)
        pruned = TokenTrie()
        for i, r in enumerate(readouts):
            if r.node != ROOT:
                node = pruned.insert([trie.tokens[n] for n in reversed(trie.ancestors(r.node))])
                readouts[i] = Readout(node, r.token_ids)
        return cls(pruned, readouts, paths)
