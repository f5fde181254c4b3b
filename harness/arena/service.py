"""The arena's work, apart from HTTP: serve blind pairs, accept votes, hand out blind images.

All store access runs on one dedicated thread (SQLite has one writer anyway, and a store connection
belongs to one thread); image re-encoding runs on a small pool of worker threads. The async methods
only await those threads, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from harness.arena.blind import BlindImages, blind_size, pair_canvas
from harness.arena.config import ArenaConfig
from harness.arena.pool import ArenaPool, Entry, Picture, load_pool
from harness.arena.sampling import PairSampler
from harness.arena.schemas import ChallengeView, Contender, Health, ImageView, Outcome, PairView, Reveal
from harness.arena.tokens import Signer, TokenError, new_image_id, new_pair_id
from harness.errors import HarnessError
from harness.store import Store
from harness.store import votes as vote_store

T = TypeVar("T")


class VoteRejected(HarnessError):
    """A vote that was not recorded; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REJECTIONS = {
    "unknown": (403, "this pair was not served by this arena"),
    "wrong_voter": (403, "this pair was served to another voter"),
    "used": (409, "this pair was already voted on"),
    "expired": (410, "pair token expired: load a new pair"),
}


class ArenaService:
    """One arena over one store. Create it, use it from one event loop, :meth:`close` it."""

    def __init__(self, config: ArenaConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.signer = Signer(config.secret or secrets.token_bytes(32))
        self.secret_is_random = config.secret is None
        self._rng: random.Random = random.Random(config.seed) if config.seed is not None else random.SystemRandom()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-store")
        self._encoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="arena-images")
        try:
            self._store: Store = self._db.submit(Store.open, config.db).result()
            self.pool: ArenaPool = self._db.submit(load_pool, self._store, config.run_ids, config.targets).result()
            self._matchups = self.pool.by_key()
            self.sampler = PairSampler({k: m.targets for k, m in self._matchups.items()},
                                       min_exposure=config.min_exposure, rng=self._rng)
            self._db.submit(self._load_counts).result()
        except BaseException:
            self.close()
            raise
        self.images = BlindImages(self._store.images_dir, config.image_cache, config.image_side)

    def _load_counts(self) -> None:
        for matchup, left, right, count in vote_store.served_counts(self._store):
            self.sampler.note_served(matchup, left, right, count)
        for left, right, outcome, count in vote_store.vote_tallies(self._store):
            self.sampler.note_vote(left, right, outcome, count)

    def close(self) -> None:
        """Finish pending store work and close the store; safe to call twice."""
        store = getattr(self, "_store", None)
        if store is not None:
            self._db.submit(store.close).result()
            del self._store
        self._db.shutdown(wait=True)
        self._encoders.shutdown(wait=True)

    async def _on_store(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, partial(fn, *args))

    # -- pairs -------------------------------------------------------------------------------------------

    def _pick(self, entries: tuple[Entry, ...]) -> Entry:
        return entries[0] if len(entries) == 1 else self._rng.choice(entries)

    def _serve(self, voter: str) -> PairView:
        choice = self.sampler.choose()
        matchup = self._matchups[choice.matchup]
        left, right = self._pick(matchup.entries[choice.left]), self._pick(matchup.entries[choice.right])
        now = self._clock()
        pair = vote_store.ServedPair(
            pair_id=new_pair_id(), voter=voter, matchup=matchup.key, challenge_id=matchup.challenge_id,
            variant=matchup.variant, category=matchup.category, kind=matchup.kind,
            left=vote_store.ServedSide(left.run_id, left.target, left.model, left.provider, left.attempt_id,
                                       left.sha256),
            right=vote_store.ServedSide(right.run_id, right.target, right.model, right.provider,
                                        right.attempt_id, right.sha256),
            served_at=now, expires_at=now + self.config.token_ttl_s,
        )
        side = self.config.image_side
        canvas = pair_canvas(blind_size(left.width, left.height, side), blind_size(right.width, right.height, side))
        shown: list[tuple[str, Entry | Picture, tuple[int, int] | None]] = [
            ("Left", left, canvas), ("Right", right, canvas), *((p.label, p, None) for p in matchup.references)]
        images = [vote_store.ServedImage(new_image_id(), label.lower().replace(" ", "-"), item.sha256, item.ext, frame)
                  for label, item, frame in shown]
        vote_store.record_served_pair(self._store, pair, images)
        self.sampler.note_served(matchup.key, choice.left, choice.right)
        views = []
        for img, (label, item, frame) in zip(images, shown, strict=True):
            width, height = frame or blind_size(item.width, item.height, side)
            views.append(ImageView(url=f"/img/{img.image_id}", width=width, height=height, label=label))
        return PairView(
            token=self.signer.pair_token(pair.pair_id, voter, pair.expires_at), expires_at=pair.expires_at,
            challenge=ChallengeView(title=matchup.title, prompt=matchup.prompt, kind=matchup.kind,
                                    category=matchup.category, references=views[2:]),
            left=views[0], right=views[1],
        )

    async def new_pair(self, voter: str) -> PairView:
        """Serve a fresh blind pair to ``voter`` (recorded in the store before it is returned)."""
        return await self._on_store(self._serve, voter)

    # -- votes -------------------------------------------------------------------------------------------

    def _cast(self, voter: str, pair_id: str, outcome: Outcome, client_ms: float | None) -> Reveal:
        result = vote_store.cast_vote(self._store, pair_id=pair_id, voter=voter, outcome=outcome,
                                      voted_at=self._clock(), vote_uid=uuid.uuid4().hex, client_ms=client_ms)
        if result.status != "accepted" or result.pair is None or result.vote is None:
            status, message = _REJECTIONS[result.status]
            raise VoteRejected(status, message)
        pair, vote = result.pair, result.vote
        self.sampler.note_vote(pair.left.target, pair.right.target, outcome)
        return Reveal(
            vote_id=vote.vote_uid, outcome=outcome,
            left=Contender(target=pair.left.target, model=pair.left.model, provider=pair.left.provider),
            right=Contender(target=pair.right.target, model=pair.right.model, provider=pair.right.provider),
            decision_ms=vote.decision_ms or 0.0,
        )

    async def vote(self, voter: str, token: str, outcome: Outcome, client_ms: float | None = None) -> Reveal:
        """Record a vote on the pair ``token`` stands for; raises :class:`VoteRejected` when the token is
        forged (403), meant for another voter (403), expired (410) or already used (409)."""
        try:
            claims = self.signer.verify_pair_token(token, voter, self._clock())
        except TokenError as exc:
            raise VoteRejected(410 if exc.expired else 403, str(exc)) from None
        return await self._on_store(self._cast, voter, claims.pair_id, outcome, client_ms)

    # -- images and health -------------------------------------------------------------------------------

    async def image(self, image_id: str) -> bytes | None:
        """Blind bytes behind a public image id, or None when the id is unknown."""
        found = await self._on_store(vote_store.served_image, self._store, image_id)
        if found is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(self._encoders, self.images.get, *found)

    async def health(self) -> Health:
        votes = await self._on_store(vote_store.count_votes, self._store)
        return Health(status="ok", matchups=len(self.pool.matchups), targets=len(self.pool.targets), votes=votes)
