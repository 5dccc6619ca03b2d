"""vector: computations that need no database: unit-length vectors and local feature-hashing embeddings."""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from typing import Any, Self

from pydantic import Field, model_validator

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.vector._base import MAX_DIMS, Vector, norm, vector_field
from pgcode.types import Effect, TxMode


class NormalizeIn(ToolInput):
    vector: Vector = vector_field("Vector to scale")


@tool(group="vector", effect=Effect.READ, tx=TxMode.NONE)
async def vector_normalize(ctx: ToolContext, args: NormalizeIn) -> dict[str, Any]:
    """The vector scaled to unit length (L2 norm 1), and its original norm.

    Needs no database.
    Unit vectors make inner product equal cosine similarity, so an inner-product index serves cosine search.
    """
    length = norm(args.vector)
    if length == 0:
        raise ToolError(ErrorCode.INVALID_INPUT, "a zero vector has no direction and cannot be normalized")
    return {"vector": [x / length for x in args.vector], "norm": length, "dimensions": len(args.vector)}


EMBED_METHOD = "feature hashing of words and character 3-grams (local, deterministic; not a semantic model)"
_WORD = re.compile(r"\w+", re.UNICODE)


class EmbedIn(ToolInput):
    text: str | None = Field(None, max_length=100_000, description="Text to embed")
    texts: list[str] | None = Field(None, max_length=1000, description="Several texts, instead of text")
    dimensions: int = Field(384, ge=8, le=MAX_DIMS)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either text or texts")
        if self.texts is not None and sum(map(len, self.texts)) > 1_000_000:
            raise ValueError("texts total more than 1,000,000 characters")
        return self


@tool(group="vector", effect=Effect.READ, tx=TxMode.NONE)
async def vector_embed(ctx: ToolContext, args: EmbedIn) -> dict[str, Any]:
    """Text vectors by feature hashing (words and 3-grams): NOT a semantic model.

    Local, unit-length vectors of `dimensions` (store them in a column of the same dimensions). Texts that share words
    and spellings get similar vectors; synonyms and paraphrases do not. Deterministic (the same text always gives the
    same vector, on any server) and needs no database or network. For meaning-aware search, compute embeddings with a
    real model and store them with pg_vector_insert.
    """
    texts = [args.text] if args.text is not None else list(args.texts or ())
    vectors = [hashed_embedding(t, args.dimensions) for t in texts]
    out: dict[str, Any] = {"method": EMBED_METHOD, "semantic": False, "dimensions": args.dimensions}
    if args.text is not None:
        out["vector"] = vectors[0]
    else:
        out["vectors"] = vectors
    return out


def hashed_embedding(text: str, dims: int) -> list[float]:
    """Signed feature hashing: each feature adds ±1 at a bucket chosen by a stable hash (blake2b, not hash())."""
    vec = [0.0] * dims
    for feature, weight in _features(text):
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        h = int.from_bytes(digest, "little")
        vec[h % dims] += weight if (h >> 63) & 1 else -weight
    length = math.sqrt(math.fsum(x * x for x in vec))
    return [x / length for x in vec] if length else vec


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    feats: list[tuple[str, float]] = [("w:" + w, 1.0) for w in words]
    for w in words:
        padded = f"<{w}>"
        feats.extend(("c:" + padded[i:i + 3], 0.5) for i in range(len(padded) - 2))
    return feats
