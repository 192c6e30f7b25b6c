"""Byte-level BPE in pure Python (GPT-2 / RoBERTa): the ids keras-hub's ``BytePairTokenizer`` gives in
training, without TensorFlow or a regex package.

keras-hub runs GPT-2's pre-tokenization regex (``'s|'t|… | ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``)
as RE2 steps without look-ahead: a marker ``६`` (U+096C) is put before every space that precedes a
non-space, the text is split with ``SPLIT_PATTERN_1`` keeping every piece, the last whitespace character (or
marker) of each piece is split off with ``SPLIT_PATTERN_2``, and the markers are dropped. This module does
the same steps with hand-written matchers over :mod:`unicodedata` categories (the stdlib ``re`` has no
``\\p{L}``/``\\p{N}``), keeping keras-hub's quirks (a ``६`` typed in the text vanishes like the markers;
the text ends at a NUL, where TensorFlow stops reading it).

This is keras-hub's ``tf.data`` path: what ``fit``/``predict``/``evaluate`` run on lists of strings when
``grain`` is not installed, and every ``tf.data`` pipeline. keras-hub 0.32's eager path (calling the
tokenizer on Python strings) passes the split pattern to ``tokenizers`` as a literal string and so does not
pre-split at all; its ids differ on runs of spaces (docs/converter.md).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache

# RE2's \s (ASCII, without \v) and the spaces keras-hub adds to both patterns.
_RE2_SPACE = frozenset("\t\n\f\r ")
_SPECIAL_SPACES = frozenset("\u00a0\u2009\u202f\u3000")
_MARK = "\u096c"  # "६": keras-hub's stand-in for GPT-2's look-ahead
_SPACES = _RE2_SPACE | _SPECIAL_SPACES  # [\s{special}]
_RUN_END = frozenset("\n\r\t\f") | {_MARK} | _SPECIAL_SPACES  # [\n\r\t\f६{special}]
_LAST = frozenset(" \t\r\f\v") | {_MARK} | _SPECIAL_SPACES  # SPLIT_PATTERN_2: [ \t\r\f\v६{special}]$
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
_OTHER = 0
_LETTER = 1
_NUMBER = 2


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (a space is ``Ġ``, a newline ``Ċ``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + n)
            n += 1
    return out


_BYTE_CHARS = bytes_to_unicode()


@lru_cache(maxsize=4096)
def _class(char: str) -> int:
    category = unicodedata.category(char)
    if category[0] == "L":
        return _LETTER
    if category[0] == "N":
        return _NUMBER
    return _OTHER


def _run(text: str, i: int, kind: int) -> int:
    """End of `` ?[kind]+`` at ``i`` (``i`` when it does not match)."""
    n = len(text)
    start = i + 1 if text[i] == " " and i + 1 < n and _kind(text[i + 1]) == kind else i
    j = start
    while j < n and _kind(text[j]) == kind:
        j += 1
    return j if j > start else i


def _kind(char: str) -> int:
    if char in _SPACES:
        return -1  # none of the three classes: [^\s\p{L}\p{N}{special}] excludes the spaces
    if char.isascii():
        return _LETTER if char.isalpha() else _NUMBER if char.isdigit() else _OTHER
    return _class(char)


def _match(text: str, i: int) -> int:
    """End of ``SPLIT_PATTERN_1``'s leftmost-first match starting at ``i``, or ``i`` when none starts there."""
    if text[i] == "'":
        for c in _CONTRACTIONS:
            if text.startswith(c, i):
                return i + len(c)
    if text[i] in _SPACES:  # [\s{special}]+[\n\r\t\f६{special}], greedy with backtracking
        j = i
        while j < len(text) and text[j] in _SPACES:
            j += 1
        if j < len(text) and text[j] == _MARK:
            return j + 1
        for k in range(j - 1, i, -1):
            if text[k] in _RUN_END:
                return k + 1
    for kind in (_LETTER, _NUMBER, _OTHER):
        end = _run(text, i, kind)
        if end > i:
            return end
    return i


def _split_pattern_1(text: str) -> Iterator[str]:
    """tensorflow-text's ``regex_split(text, P, P)``: every match, and the non-empty text between them."""
    last, i, n = 0, 0, len(text)
    while i < n:
        end = _match(text, i)
        if end == i:
            if text[i] in _SPACES:
                # No match at a space: none at the next ones either (no [\n\r\t\f६…] closes the run)
                # except at its last space (" word"). Jump there: a run of spaces stays linear.
                j = i + 1
                while j < n and text[j] in _SPACES:
                    j += 1
                i = max(i + 1, j - 1)
            else:
                i += 1
            continue
        if i > last:
            yield text[last:i]
        yield text[i:end]
        last = i = end
    if last < n:
        yield text[last:]


def pre_tokenize(text: str, special: Sequence[str] = ()) -> Iterator[str]:
    """keras-hub's ``split_strings_for_bpe``: the words BPE runs on, lazily (``special`` tokens stay whole)."""
    # ( )([^\s{special}]) -> ६\1\2: a marker before each space that precedes a non-space.
    chars = []
    for i, char in enumerate(text):
        if char == " " and i + 1 < len(text) and text[i + 1] not in _SPACES:
            chars.append(_MARK)
        chars.append(char)
    text = "".join(chars)
    # (\s\x{a0}\x{2009}\x{202f}\x{3000})$ -> \1६: a literal sequence, not a class (kept as keras-hub has it).
    if len(text) >= 5 and text[-5] in _RE2_SPACE and text.endswith("\u00a0\u2009\u202f\u3000"):
        text += _MARK
    # tensorflow-text's regex_split reads a string up to its first NUL (the markers above saw all of it).
    text = text.split("\x00", 1)[0]
    pieces = [text]
    alts = _alternates(len(special))
    for token, alt in zip(special, alts, strict=True):
        pieces = [p for piece in pieces for p in _split_keep(piece, token, alt)]
    for piece in pieces:
        for raw in _split_pattern_1(piece):
            # SPLIT_PATTERN_2: the last space-like character (or marker) becomes its own piece.
            parts = [raw[:-1], raw[-1]] if len(raw) > 1 and raw[-1] in _LAST else [raw]
            for part in parts:
                for token, alt in zip(special, alts, strict=True):
                    part = part.replace(alt, token)
                if part != _MARK:
                    yield part


def _alternates(n: int) -> list[str]:
    """keras-hub's stand-ins for unsplittable tokens: ĴA, ĴB, … (digits of the index as letters)."""
    return ["Ĵ" + "".join(chr(ord("A") + int(d)) for d in str(i)) for i in range(n)]


def _split_keep(text: str, token: str, alt: str) -> Iterator[str]:
    """Split on ``token`` (kept, as ``alt``); empty pieces dropped."""
    if not token:
        yield text
        return
    parts = text.split(token)
    for k, part in enumerate(parts):
        if k:
            yield alt
        if part:
            yield part


# Above this many bytes a word is merged with a heap (n log n) instead of rescanning every pair per merge
# (n²): the same merges in the same order, and a 100,000-character word cannot stall a server.
_LONG_WORD = 48


def _merge_long(parts: list[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """keras-hub's merge loop (lowest rank first, leftmost first among equal ranks) on a linked list."""
    import heapq

    n = len(parts)
    nxt = list(range(1, n + 1))
    prev = list(range(-1, n - 1))
    heap: list[tuple[int, int, int]] = []  # (rank, left position, right position)

    def push(left: int, right: int) -> None:
        rank = ranks.get((parts[left], parts[right]))
        if rank is not None:
            heapq.heappush(heap, (rank, left, right))

    for k in range(n - 1):
        push(k, k + 1)
    while heap:
        rank, left, right = heapq.heappop(heap)
        # Stale entries: a side was merged away or grew since the pair was pushed.
        if not parts[left] or nxt[left] != right or ranks.get((parts[left], parts[right])) != rank:
            continue
        parts[left] += parts[right]
        parts[right] = ""
        nxt[left] = nxt[right]
        if nxt[left] < n:
            prev[nxt[left]] = left
            push(left, nxt[left])
        if prev[left] >= 0:
            push(prev[left], left)
    return [p for p in parts if p]


class BytePairTokenizer:
    """Byte-level BPE with keras-hub's ids: pre-tokenize, map each word's UTF-8 bytes to GPT-2's characters,
    merge the lowest-ranked adjacent pair (its first occurrence) until no pair is in ``merges``, look each
    piece up in ``vocab``. A piece outside the vocabulary gets id -1, as keras-hub's lookup gives it.

    ``vocab``: a list (index = id) or a ``{token: id}`` mapping; ``merges``: ``"a b"`` rules, best first;
    ``special``: unsplittable tokens (typed in the text, they map to their own id).
    """

    def __init__(
        self,
        vocab: Sequence[str] | Mapping[str, int],
        merges: Sequence[str],
        *,
        special: Sequence[str] = (),
        add_prefix_space: bool = False,
    ) -> None:
        if isinstance(vocab, Mapping):
            self.index = {str(t): int(i) for t, i in vocab.items()}
        else:
            self.index = {str(t): i for i, t in enumerate(vocab)}
        size = max(self.index.values(), default=-1) + 1
        self.vocab = [""] * size
        for token, i in self.index.items():
            if i < 0:
                raise ValueError(f"token {token!r} has a negative id {i}")
            self.vocab[i] = token
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, rule in enumerate(merges):
            if str(rule).lstrip().startswith("#version:"):
                continue
            pair = str(rule).split(" ")
            if len(pair) != 2 or pair[0] not in self.index or pair[1] not in self.index:
                raise ValueError(f"merge rule {rule!r} is not two vocabulary tokens separated by a space")
            self.ranks.setdefault((pair[0], pair[1]), rank)
        self.special = [str(t) for t in special]
        for token in self.special:
            if token not in self.index:
                raise ValueError(f"special token {token!r} is not in the vocabulary")
        self.add_prefix_space = bool(add_prefix_space)
        self._words: Callable[[str], tuple[str, ...]] = lru_cache(maxsize=16384)(self._bpe)

    def words(self, text: str) -> list[str]:
        """Pre-tokenized words (before BPE), as keras-hub's ``split_strings_for_bpe`` gives them."""
        return list(self._pre(text))

    def _pre(self, text: str) -> Iterator[str]:
        return pre_tokenize(" " + text if self.add_prefix_space else text, self.special)

    def _bpe(self, word: str) -> tuple[str, ...]:
        if word in self.special:
            return tuple(word.split(" "))
        # surrogatepass: a lone surrogate (possible from JSON) is tokenized as bytes, never a crash.
        parts = [_BYTE_CHARS[b] for b in word.encode("utf-8", "surrogatepass")]
        if len(parts) > _LONG_WORD:
            return tuple(_merge_long(parts, self.ranks))
        ranks = self.ranks
        while len(parts) > 1:
            best, at = None, -1
            for k in range(len(parts) - 1):
                rank = ranks.get((parts[k], parts[k + 1]))
                if rank is not None and (best is None or rank < best):
                    best, at = rank, k
            if best is None:
                break
            parts[at : at + 2] = [parts[at] + parts[at + 1]]
        return tuple(parts)

    def pieces(self, word: str) -> list[str]:
        """One pre-tokenized word as BPE pieces (GPT-2 characters: ``Ġ`` is a space)."""
        return list(self._words(word))

    def tokens(self, text: str) -> list[str]:
        return [piece for word in self.words(text) for piece in self._words(word)]

    def ids(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids; with ``limit``, the first ``limit`` only (the rest of the text is not merged)."""
        out: list[int] = []
        index = self.index
        for word in self._pre(text):
            out += [index.get(piece, -1) for piece in self._words(word)]
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out
