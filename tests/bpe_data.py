"""A byte-level BPE vocabulary trained here, in pure Python (no download, no TensorFlow), and a varied
corpus to compare tokenizers on.

``train_bpe`` is the textbook GPT-2 training loop: pre-split like GPT-2 (an approximation with the stdlib
``re`` is enough to *make* merges), start from the 256 byte characters, and repeatedly merge the most
frequent adjacent pair. A few hundred merges on this module's texts give real multi-byte pieces (``Ġthe``,
``ing``, accented and CJK byte pairs), so parity tests exercise the merge loop, not just byte fallback.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

from onnxfn.runtime._bpe import bytes_to_unicode

ROBERTA_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

TRAIN = [
    "The quick brown fox jumps over the lazy dog. Don't panic! I'll be there, you're right, we've won.",
    "Café crème, naïve résumé, déjà vu — São Paulo, Zürich, Ærøskøbing. Ça va? Très bien, merci.",
    "Straße, İstanbul, ΣΊΣΥΦΟΣ, Ωμέγα, Москва и Санкт-Петербург, привет мир.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。東京タワー",
    "हिन्दी में लिखा गया वाक्य। العربية لغة جميلة. שלום עולם, מה שלומך?",
    "Numbers 3.14 and 1,000,000; 2024-01-31 at 12:45; e-mail a.b@example.com; https://x.org/a?b=c#d",
    "Emoji 😀👍🏽 and 🇫🇷 flags, symbols © ® ™ ° ± × ÷ € £ ¥ §, the end.",
    "def main(argv):\n\treturn 0  # code, with    spaces\n\n\nand blank lines",
    "the the the of and to in is it that was for on are with as his they be at one have this from",
    "running jumped happily unbelievable tokenization transformers classification sentence",
]

CORPUS = [
    *TRAIN,
    "Hello, World!! hello world HELLO",
    "don't won't can't I'll you'd she's we're they've I'm DON'T I'LL it’s",  # ’ is not an apostrophe
    "'s 't 're 've 'm 'll 'd '' ' x'",
    "12345 3.14  1,000 ١٢٣ ४५६ ½ ① Ⅻ",  # Arabic-Indic and Devanagari digits, fractions, numerals
    "१२६ ६ a६b",  # keras-hub's marker character typed in the text: it vanishes, as in keras-hub
    "a  b   c\t\td\n\ne \n",
    "  leading spaces",
    "trailing spaces   ",
    "tab\tsep\ttext\t",
    "line1\r\nline2\rline3\x0bvt\x0cff\x1cfs\x85nel",
    "nbsp\u00a0x thin\u2009x narrow\u202fx ideo\u3000x em\u2003x  \u00a0 \u2009\u202f\u3000",
    "zero\u200bwidth\u200cjoiners\u200d\u2060 soft\u00adhyphen \u200e\u200fmarks \ufeffbom",
    "Café CAFÉ cafe\u0301 é e\u0301 naïve ﬁne ＡＢＣ",  # precomposed vs combining: not normalized
    "東京タワー and 中文 mixed中文english 한국어 텍스트",
    "😀 😀😀 👍🏽 👨‍👩‍👧 🇫🇷🇩🇪 ❤️ a😀b",
    "مرحبا بالعالم שלום עולם العربية",  # right-to-left scripts
    "«quoted» „low“ ‹single› ¿qué? ¡sí! … — – ---- !!! ???",
    "$100 ^caret^ `tick` ~tilde~ |pipe| \\back\\ @user #tag <html> {json: [1, 2]}",
    "<s>special</s> <pad> <mask>x <unk>",  # special tokens typed in the text stay whole
    "ĴA ĴB xĴAy",  # keras-hub's stand-ins for special tokens, typed in the text
    "before NUL\x00after it",  # TensorFlow reads a string up to its first NUL
    "x \u2009  \x00B",  # ... once keras-hub's markers are in: the space before the NUL has one
    "x" * 150,
    "the" * 20 + " " + "naïveté" * 8 + " " + "東京" * 10,  # words over 48 bytes: the heap merge path
    "end" + " " * 60 + "\t" + " " * 60 + "x" + "\u3000" * 20 + "\t" + " " * 60,  # long runs of spaces
    "",
    " ",
    "\n",
    "   \t\n ",
    "The quick brown fox. " * 40,  # over-long: truncated by the packer
]


def _pre_split(text: str) -> list[str]:
    return re.findall(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+", text)


def train_bpe(texts: list[str], merges: int = 400, special: list[str] | None = None) -> tuple[dict, list]:
    """``(vocabulary {token: id}, merges ["a b", ...])``: special tokens, the 256 byte characters, then one
    token per merge (RoBERTa's layout)."""
    chars = bytes_to_unicode()
    words = Counter(tuple(chars[b] for b in w.encode("utf-8")) for t in texts for w in _pre_split(t))
    vocab = [*(special or []), *chars.values()]
    rules: list[str] = []
    for _ in range(merges):
        pairs: Counter = Counter()
        for word, n in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # ties broken reproducibly
        rules.append(f"{a} {b}")
        vocab.append(a + b)
        merged: Counter = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return {token: i for i, token in enumerate(dict.fromkeys(vocab))}, rules
