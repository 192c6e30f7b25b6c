"""Data for the converter tests: digit labels and a *generated* text corpus.

No labelled text corpus ships offline with any installed package (sklearn's 20newsgroups and Keras' IMDB
download at run time), so ``make_corpus`` generates short topic sentences: seeded, with punctuation, mixed
case, repeated words and non-ASCII words, so that Keras' standardisation is really exercised.
"""

from __future__ import annotations

import numpy as np

DIGIT_LABELS = [str(i) for i in range(10)]
TOPICS = {
    "sports": "goal match team coach league score striker keeper referee season final trophy fans stadium "
    "penalty tennis racket marathon sprint medal",
    "tech": "software laptop chip kernel compiler server cloud network python code bug release update "
    "database startup robot sensor battery browser",
    "food": "pasta recipe oven garlic butter flavour chef dinner sauce bakery bread cheese soup spicy "
    "dessert tomato kitchen café crème",
    "weather": "rain storm forecast sunny cloudy wind snow temperature humidity thunder drizzle frost "
    "heatwave umbrella breeze fog degrees été",
}
FILLER = (
    "the a an and or but with for of on in at to from this that it is was very really today yesterday "
    "we they she he my our their some many new old big small good bad just also about"
).split()
MAX_LEN = 24


def make_corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` generated sentences over four topics (see the module docstring: this text is synthetic)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    words = {k: v.split() for k, v in TOPICS.items()}
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(len(names)))
        length = int(rng.integers(5, 20))
        tokens = []
        for _ in range(length):
            r = rng.random()
            if r < 0.38:
                tokens.append(str(rng.choice(words[names[label]])))
            elif r < 0.45:  # a word from another topic: the classifier must weigh evidence
                tokens.append(str(rng.choice(words[names[int(rng.integers(len(names)))]])))
            else:
                tokens.append(str(rng.choice(FILLER)))
        if rng.random() < 0.5:
            tokens[0] = tokens[0].capitalize()
        if rng.random() < 0.2:
            i = int(rng.integers(len(tokens)))
            tokens[i] = tokens[i].upper()  # "ÉTÉ" stays "Été"-like under TF's ASCII-only lower()
        if rng.random() < 0.3:
            i = int(rng.integers(len(tokens)))
            tokens[i] += str(rng.choice(["'s", ",", "!", "?", ";", "..."]))
        texts.append(" ".join(tokens) + str(rng.choice([".", "!", "", "?"])))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)
