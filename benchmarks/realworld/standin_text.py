"""Deterministic text for the stand-in hub: a small lexicon, sentences built from it, and the rows of each task.

Standard library only. Every generator takes a `random.Random` seeded by the caller, so the same build gives the
same bytes. Rows carry simple learnable structure (the sentiment follows the adjective, the answer is a span of
the context, the summary restates the first fact), and `unique_rows` keeps train and evaluation rows distinct.
"""

from __future__ import annotations

import random

FIRST = [
    "Alice",
    "Bob",
    "Carol",
    "David",
    "Emma",
    "Frank",
    "Grace",
    "Henry",
    "Irene",
    "Jack",
    "Karen",
    "Liam",
    "Maria",
    "Nora",
    "Oscar",
    "Paula",
    "Quinn",
    "Rosa",
    "Sam",
    "Tina",
    "Victor",
    "Wendy",
    "Yusuf",
    "Zoe",
]
LAST = ["Smith", "Jones", "Brown", "Garcia", "Miller", "Wilson", "Moore", "Taylor", "Clark", "Lewis", "Walker", "Young"]
PLACES = [
    "Paris",
    "London",
    "Berlin",
    "Madrid",
    "Rome",
    "Vienna",
    "Lisbon",
    "Dublin",
    "Oslo",
    "Prague",
    "Warsaw",
    "Athens",
    "Boston",
    "Chicago",
    "Denver",
    "Toronto",
    "Sydney",
    "Tokyo",
    "Cairo",
    "Lima",
]
ORGS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Oscorp",
]
NATIONS = ["French", "German", "Spanish", "Italian", "British", "Irish", "Greek", "Polish", "Dutch", "Swiss"]
NOUNS = [
    "book",
    "car",
    "house",
    "garden",
    "river",
    "song",
    "movie",
    "letter",
    "bridge",
    "machine",
    "picture",
    "meal",
    "school",
    "train",
    "market",
    "window",
    "story",
    "game",
    "phone",
    "ship",
    "forest",
    "village",
    "painting",
    "report",
    "museum",
    "concert",
    "island",
    "bicycle",
    "kitchen",
    "library",
]
GOOD = [
    "good",
    "great",
    "wonderful",
    "excellent",
    "lovely",
    "brilliant",
    "pleasant",
    "beautiful",
    "superb",
    "delightful",
]
BAD = ["bad", "terrible", "awful", "boring", "dull", "poor", "horrible", "ugly", "weak", "dreadful"]
NEUTRAL = ["old", "new", "small", "large", "red", "blue", "quiet", "busy", "long", "short"]
VERBS = [
    ("visited", "visit"),
    ("painted", "paint"),
    ("built", "build"),
    ("sold", "sell"),
    ("found", "find"),
    ("watched", "watch"),
    ("wrote", "write"),
    ("cleaned", "clean"),
    ("bought", "buy"),
    ("opened", "open"),
    ("described", "describe"),
    ("repaired", "repair"),
]
ADVERBS = ["yesterday", "today", "slowly", "quickly", "again", "twice", "carefully", "happily"]
TOPICS = ["history", "music", "science", "sports", "travel", "cooking", "weather", "art", "health", "money"]
ANIMALS = {
    "cat": "meow",
    "dog": "woof",
    "cow": "moo",
    "duck": "quack",
    "sheep": "baa",
    "pig": "oink",
    "horse": "neigh",
    "owl": "hoot",
    "lion": "roar",
    "mouse": "squeak",
    "frog": "ribbit",
    "bee": "buzz",
}
FUNCTION = [
    "the",
    "a",
    "an",
    "of",
    "in",
    "on",
    "at",
    "to",
    "for",
    "with",
    "and",
    "or",
    "but",
    "is",
    "was",
    "are",
    "were",
    "be",
    "it",
    "this",
    "that",
    "he",
    "she",
    "they",
    "we",
    "you",
    "i",
    "my",
    "his",
    "her",
    "their",
    "who",
    "what",
    "where",
    "which",
    "when",
    "why",
    "how",
    "does",
    "did",
    "do",
    "not",
    "no",
    "yes",
    "very",
    "lives",
    "live",
    "works",
    "work",
    "owns",
    "own",
    "likes",
    "like",
    "says",
    "say",
    "make",
    "makes",
    "sound",
    "answer",
    "question",
    "summary",
    "summarize",
    "translate",
    "english",
    "romanian",
    "french",
    "german",
    "from",
    "by",
    "about",
    "there",
    "here",
    "than",
    "then",
    "so",
    "also",
    "because",
    "after",
    "before",
    "company",
    "city",
    "thing",
    "things",
    "people",
    "user",
    "assistant",
    "system",
    "helpful",
    "please",
    "tell",
    "me",
    "give",
    "write",
    "short",
    "sentence",
    "review",
    "text",
    "title",
    "story",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "animal",
    "farm",
    "hello",
    "thanks",
    "sure",
    "course",
    "of",
    "can",
    "could",
    "would",
    "will",
    "should",
    "has",
    "have",
    "had",
    "its",
    "into",
    "over",
    "under",
    "new",
    "first",
    "last",
    "every",
    "all",
    "some",
    "many",
    "more",
    "most",
    "other",
    "group",
    "instruction",
    "input",
    "output",
    "response",
    "context",
    "human",
    "label",
    "positive",
    "negative",
]
DIGITS = [str(i) for i in range(10)]
PUNCT = [
    ".",
    ",",
    "?",
    "!",
    ":",
    ";",
    "'",
    '"',
    "-",
    "(",
    ")",
    "=",
    "/",
    "%",
    "$",
    "&",
    "*",
    "+",
    "<",
    ">",
    "#",
    "@",
    "[",
    "]",
    "{",
    "}",
    "_",
    "|",
    "~",
    "`",
    "^",
    "\\",
]


def foreign(word: str, lang: str) -> str:
    """A made-up word of language `lang` for an English word: stable, distinct per language, readable."""
    if not word or not word[0].isalpha():
        return word
    vowels = "aeiou"
    body = "".join(vowels[(vowels.index(c) + 1) % 5] if c in vowels else c for c in word.lower())
    ending = {"ro": "ul", "fr": "e", "de": "en", "es": "o"}.get(lang, "a")
    out = body + ending
    return out.capitalize() if word[0].isupper() else out


def all_words() -> list[str]:
    """Every word the generators can write (English and made-up foreign ones), for the fixed vocabularies."""
    english = (
        FIRST
        + LAST
        + PLACES
        + ORGS
        + NATIONS
        + NOUNS
        + GOOD
        + BAD
        + NEUTRAL
        + [v for pair in VERBS for v in pair]
        + ADVERBS
        + TOPICS
        + list(ANIMALS)
        + list(ANIMALS.values())
        + FUNCTION
        + [n + "s" for n in NOUNS]
    )
    words = list(dict.fromkeys(english))
    for lang in ("ro", "fr", "de", "es"):
        words += [foreign(w, lang) for w in english]
    return list(dict.fromkeys(words))


class Writer:
    """Sentences, facts and documents drawn from the lexicon with one seeded generator."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, seq):
        return self.rng.choice(seq)

    def person(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"

    def sentence(self, adjectives=None) -> str:
        past, _ = self.pick(VERBS)
        adj = self.pick(adjectives or NEUTRAL)
        tail = self.rng.choice(["", f" in {self.pick(PLACES)}", f" {self.pick(ADVERBS)}", f" with {self.pick(FIRST)}"])
        return f"{self.pick(FIRST)} {past} the {adj} {self.pick(NOUNS)}{tail}."

    def review(self, positive: bool, sentences: int = 3) -> str:
        lexicon = GOOD if positive else BAD
        parts = [self.sentence(lexicon)]
        for _ in range(sentences - 1):
            parts.append(
                self.rng.choice(
                    [
                        self.sentence(),
                        f"The {self.pick(NOUNS)} was {self.pick(lexicon)}.",
                        f"It was a {self.pick(lexicon)} {self.pick(NOUNS)}.",
                    ]
                )
            )
        self.rng.shuffle(parts)
        return " ".join(parts)

    def fact(self) -> tuple[str, str, str]:
        """(sentence, question, answer) where the answer is a span of the sentence."""
        name = self.person()
        kind = self.rng.randrange(4)
        if kind == 0:
            place = self.pick(PLACES)
            return f"{name} lives in {place}.", f"Where does {name} live?", place
        if kind == 1:
            org = self.pick(ORGS)
            return f"{name} works for {org}.", f"Which company does {name} work for?", org
        if kind == 2:
            thing = f"{self.pick(NEUTRAL)} {self.pick(NOUNS)}"
            return f"{name} owns a {thing}.", f"What does {name} own?", thing
        past, _ = self.pick(VERBS)
        thing = self.pick(NOUNS)
        return f"{name} {past} the {thing} in {self.pick(PLACES)}.", f"What did {name} {dict(VERBS)[past]}?", thing

    def paragraph(self, n: int) -> str:
        return " ".join(self.sentence() for _ in range(n))

    def tagged(self):
        """A sentence as (word, pos, chunk, ner) tuples, CoNLL-2003 style."""
        out = []
        first, last = self.pick(FIRST), self.pick(LAST)
        out += [(first, "NNP", "B-NP", "B-PER"), (last, "NNP", "I-NP", "I-PER")]
        past, _ = self.pick(VERBS)
        out.append((past, "VBD", "B-VP", "O"))
        if self.rng.random() < 0.5:
            out += [
                ("the", "DT", "B-NP", "O"),
                (self.pick(NATIONS), "JJ", "I-NP", "B-MISC"),
                (self.pick(NOUNS), "NN", "I-NP", "O"),
            ]
        else:
            out += [("the", "DT", "B-NP", "O"), (self.pick(NOUNS), "NN", "I-NP", "O")]
        choice = self.rng.randrange(3)
        if choice == 0:
            out += [("in", "IN", "B-PP", "O"), (self.pick(PLACES), "NNP", "B-NP", "B-LOC")]
        elif choice == 1:
            org = self.pick(ORGS)
            out += [("for", "IN", "B-PP", "O"), (org, "NNP", "B-NP", "B-ORG"), ("Group", "NNP", "I-NP", "I-ORG")]
        else:
            out += [(self.pick(ADVERBS), "RB", "B-ADVP", "O")]
        out.append((".", ".", "O", "O"))
        return out

    def translation(self, lang: str) -> tuple[str, str]:
        en = self.sentence()
        words = en[:-1].split(" ")
        return en, " ".join(foreign(w, lang) for w in words) + "."


def unique_rows(make, counts: dict[str, int], key=lambda row: repr(row)):
    """Rows for each split from `make()`, no row (by `key`) in two splits or twice in one."""
    seen, out = set(), {}
    for split, n in counts.items():
        rows = []
        tries = 0
        while len(rows) < n:
            tries += 1
            if tries > 200 * n + 1000:
                raise RuntimeError(f"cannot draw {n} distinct rows for {split}")
            row = make(split, len(rows))
            k = key(row)
            if k in seen:
                continue
            seen.add(k)
            rows.append(row)
        out[split] = rows
    return out
