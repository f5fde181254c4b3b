"""The JSON API's request and response bodies (published in the app's OpenAPI schema).

Nothing in a pair's body names a model, provider, target or run: images are addressed by random ids
and the token is opaque. Names appear only in a :class:`Reveal`, the answer to an accepted vote.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["left", "right", "tie", "both_bad"]


class ImageView(BaseModel):
    """An image to show; ``url`` is a random, single-pair address; sizes in pixels."""

    url: str
    width: int
    height: int
    label: str = Field(description="what the page calls it: Left, Right, Reference 1, Mask")


class ChallengeView(BaseModel):
    """The challenge both images answer. ``prompt`` is untrusted text: render it as text, never as HTML."""

    title: str
    prompt: str
    kind: str = Field(description="text-to-image, edit, compose, inpaint or multi-turn")
    category: str
    references: list[ImageView]


class TurnView(BaseModel):
    """One turn of a sequence pair: the turn's instruction (untrusted text: render it as text) and each side's
    image after that turn, both cropped to one canvas."""

    turn: int = Field(ge=1, description="1-based turn index")
    instruction: str
    left: ImageView
    right: ImageView


class PairView(BaseModel):
    """A blind pair: vote on it by posting ``token`` to ``/api/vote`` before ``expires_at`` (Unix s).

    For a multi-turn challenge the pair is two whole conversations: ``turns`` lists every turn (both sides
    always have the same number: only complete sequences are paired), ``left``/``right`` are the final
    images, and the vote is on the sequence. Empty for single-image challenges."""

    token: str
    expires_at: float
    challenge: ChallengeView
    left: ImageView
    right: ImageView
    turns: list[TurnView] = Field(default_factory=list,
                                  description="each turn of a sequence pair, in order; empty for single images")


class VoteIn(BaseModel):
    """A vote. ``client_ms``: optional time the voter looked at the pair, measured by the page (ms)."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    outcome: Outcome
    client_ms: float | None = Field(default=None, ge=0, le=86_400_000)


class SkipIn(BaseModel):
    """A skip: the voter passes on the pair ``token`` stands for without judging it (not a vote; no names
    are revealed). ``client_ms``: optional time the page showed the pair (ms)."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    client_ms: float | None = Field(default=None, ge=0, le=86_400_000)


class Skipped(BaseModel):
    """An accepted skip, and the voter's counts so far (this skip included)."""

    skipped: Literal[True]
    votes_cast: int = Field(description="votes this voter cookie has cast in this arena")
    skips: int = Field(description="pairs this voter cookie has skipped")


class Contender(BaseModel):
    """Who made one side's image."""

    target: str
    model: str
    provider: str


class Reveal(BaseModel):
    """An accepted vote and the names behind the pair. ``decision_ms``: server-measured time from
    serving the pair to the vote (ms)."""

    vote_id: str
    outcome: Outcome
    left: Contender
    right: Contender
    decision_ms: float
    votes_cast: int = Field(default=0, description="votes this voter cookie has cast in this arena, this one "
                                                   "included (the page's counter)")


class Health(BaseModel):
    """Liveness and size of the arena (counts only: no names)."""

    status: Literal["ok"]
    matchups: int
    targets: int
    votes: int
    sequences_left_out: int | None = Field(
        default=None, description="multi-turn conversations not paired because they are incomplete (a turn failed "
                                  "or never ran) or miss a turn's image; absent when the arena has no multi-turn "
                                  "challenge")


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str
