"""The word list and rules of pg_text_sentiment: a small lexicon scorer with negation, nothing learned."""

from __future__ import annotations

import re
from typing import Any

# Word -> weight, -3 (very negative) .. +3 (very positive). English only; written for this tool.
LEXICON: dict[str, int] = {
    # positive
    "amazing": 3, "awesome": 3, "brilliant": 3, "excellent": 3, "fantastic": 3, "outstanding": 3,
    "perfect": 3, "superb": 3, "wonderful": 3, "love": 3, "loved": 3, "loves": 3, "delighted": 3,
    "great": 2, "good": 2, "happy": 2, "pleased": 2, "nice": 2, "beautiful": 2, "enjoy": 2, "enjoyed": 2,
    "impressive": 2, "recommend": 2, "recommended": 2, "reliable": 2, "satisfied": 2, "fast": 1,
    "best": 3, "better": 1, "fine": 1, "helpful": 2, "friendly": 2, "easy": 1,
    "clean": 1, "comfortable": 2, "fun": 2, "glad": 2, "thanks": 1, "thank": 1, "useful": 2, "works": 1,
    "quick": 1, "smooth": 1, "positive": 2, "success": 2, "successful": 2, "win": 2, "fixed": 1,
    # negative
    "awful": -3, "terrible": -3, "horrible": -3, "worst": -3, "hate": -3, "hated": -3, "hates": -3,
    "disgusting": -3, "useless": -3, "disaster": -3, "furious": -3, "broken": -2, "bad": -2, "poor": -2,
    "disappointed": -2, "disappointing": -2, "angry": -2, "annoying": -2, "sad": -2, "unhappy": -2,
    "fail": -2, "failed": -2, "fails": -2, "failure": -2, "problem": -1, "problems": -1, "issue": -1,
    "issues": -1, "slow": -1, "bug": -1, "bugs": -1, "crash": -2, "crashed": -2, "crashes": -2,
    "error": -1, "errors": -1, "wrong": -2, "worse": -2, "difficult": -1, "expensive": -1,
    "dirty": -2, "rude": -2, "unreliable": -2, "confusing": -1, "refund": -1, "waste": -2, "wasted": -2,
    "negative": -2, "lost": -1, "missing": -1, "late": -1, "ugly": -2, "boring": -2, "dislike": -2,
}

NEGATORS = frozenset({
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "cannot", "without",
    "hardly", "barely", "scarcely",
})
NEGATION_WINDOW = 3  # a negator flips sentiment words among the next three words of its clause

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|[.,;:!?]")
_CLAUSE_END = frozenset(".,;:!?")


def _negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't")


def score(text: str) -> dict[str, Any]:
    """Score one text: the sum of its words' weights, each flipped when a negator precedes it closely."""
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    words = 0
    since_negator: int | None = None  # words seen since the last negator in this clause
    total = 0
    matches: list[dict[str, Any]] = []
    for token in tokens:
        if token in _CLAUSE_END:
            since_negator = None
            continue
        words += 1
        weight = LEXICON.get(token)
        if weight is not None:
            negated = since_negator is not None and since_negator < NEGATION_WINDOW
            value = -weight if negated else weight
            total += value
            matches.append({"word": token, "weight": value, "negated": negated})
        if _negator(token):
            since_negator = 0
        elif since_negator is not None:
            since_negator += 1
    label = "positive" if total > 0 else "negative" if total < 0 else "neutral"
    return {"score": total, "comparative": round(total / words, 4) if words else 0.0, "label": label,
            "words": words, "matches": matches}
