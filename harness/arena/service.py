"""The arena's work, apart from HTTP: serve blind pairs, accept votes, hand out blind images.

All store access runs on one dedicated thread (SQLite has one writer anyway, and a store connection
belongs to one thread); image re-encoding runs on a small pool of worker threads. The async methods
only await those threads, so the event loop never blocks.

Serving a pair is three steps: choose two outputs this voter may see (store thread; see
:mod:`harness.arena.recognition`), render both blind images (worker threads; cached, so an output's
bytes never change, and its perceptual hash is learnt on first rendering), then check again and record
the pair (store thread). An output that cannot be decoded is left out of pairing with a logged reason,
and another pair is chosen, so no pair is ever served whose image would fail.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pandas as pd

from harness.arena.blind import BlindImages, blind_size, pair_canvas
from harness.arena.config import ArenaConfig
from harness.arena.leaderboard import SOURCES as LEADERBOARD_SOURCES
from harness.arena.memo import BoundedMemo
from harness.arena.phash import dhash
from harness.arena.pool import ArenaPool, Entry, Matchup, Picture, PoolRefresher, load_pool
from harness.arena.recognition import Recognition
from harness.arena.sampling import PAIR_BY, PairBy, PairSampler
from harness.arena.schemas import (
    ChallengeView,
    Contender,
    Health,
    ImageView,
    Outcome,
    PairView,
    Reveal,
    Skipped,
    TurnView,
)
from harness.arena.sequences import MULTI_TURN, SequencePool, SequenceTurn, with_sequences
from harness.arena.tokens import Signer, TokenError, new_image_id, new_pair_id
from harness.errors import ConfigError, HarnessError
from harness.store import Store, arena_seen
from harness.store import skips as skip_store
from harness.store import votes as vote_store

T = TypeVar("T")
log = logging.getLogger("harness.arena")
SERVE_TRIES = 8
"""Pairs tried per request before answering that none is left (each try may meet a broken output or a
perceptual duplicate of something the voter has seen revealed)."""


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
SERVED_HERE_MAX = 8192
"""Image ids a worker remembers having served (with what each shows); older ones are read from the store."""

ImageKey = tuple[str, str, tuple[int, int] | None]
"""What an image id shows: ``(sha256, ext, canvas)``, as :func:`vote_store.served_image` returns it."""


NO_PAIR_LEFT = ("no pair left to show you: every output here has either been revealed to you (this browser "
                "or this network address) by an earlier vote or reached its serving limit")


@dataclass(frozen=True, slots=True)
class _Plan:
    """Two outputs chosen for a voter, not yet rendered nor recorded."""

    matchup: Matchup
    left: Entry
    right: Entry
    canvas: tuple[int, int]
    identities: tuple[str, ...]


def load_sequences(store: Store, config: ArenaConfig) -> SequencePool:
    """The configured pool with multi-turn matchups reduced to complete sequences
    (:func:`~harness.arena.sequences.with_sequences`); raises :class:`ConfigError` when nothing is left to pair."""
    found = with_sequences(store, load_pool(store, config.run_ids, config.targets), config.targets)
    if not found.pool.matchups:
        raise ConfigError(f"nothing to pair: {found.left_out} multi-turn conversation(s) are incomplete (a turn "
                          "failed or never ran) and only complete sequences are paired")
    return found


def pair_by_of(config: ArenaConfig, pair_by: PairBy | None = None) -> PairBy:
    """What the arena pairs: ``pair_by`` when given, else the configuration's ``pair_by``."""
    chosen = pair_by if pair_by is not None else config.pair_by
    if chosen not in PAIR_BY:
        raise ConfigError(f"pair by must be one of {', '.join(PAIR_BY)}, not {chosen!r}")
    return chosen


def contenders(pool: ArenaPool, pair_by: PairBy) -> dict[str, str]:
    """Target -> the contender it counts for: its model (``pair_by="model"``) or itself."""
    return {e.target: (e.model if pair_by == "model" else e.target)
            for m in pool.matchups for entries in m.entries.values() for e in entries}


class ArenaService:
    """One arena over one store. Create it, use it from one event loop, :meth:`close` it.

    ``pair_by``: ``model`` (default; two targets of one model never meet) or ``target`` (see
    :mod:`harness.arena.sampling`); None takes it from the configuration."""

    def __init__(self, config: ArenaConfig, *, clock: Callable[[], float] = time.time,
                 pair_by: PairBy | None = None) -> None:
        self.config = config
        self.pair_by = pair_by_of(config, pair_by)
        self._clock = clock
        self.signer = Signer(config.secret or secrets.token_bytes(32))
        self.secret_is_random = config.secret is None
        self._rng: random.Random = random.Random(config.seed) if config.seed is not None else random.SystemRandom()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-store")
        self._encoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="arena-images")
        self._served_here: BoundedMemo[str, ImageKey] = BoundedMemo(SERVED_HERE_MAX)
        """Image ids this worker recorded (written on the store thread, read on the event loop). Safe to keep:
        an image id is random, stored once and never changes what it shows."""
        try:
            self._store: Store = self._db.submit(Store.open, config.db).result()
            sequences = self._db.submit(load_sequences, self._store, config).result()
            self.pool: ArenaPool = sequences.pool
            self.turns = sequences.turns
            self.sequences_left_out = sequences.left_out
            self._matchups = self.pool.by_key()
            self.sampler = self._sampler()
            self._refresher = PoolRefresher(config, self._clock)
            self.recognition = Recognition(config.max_servings)
            self._db.submit(self._load_counts).result()
        except BaseException:
            self.close()
            raise
        for reason, count in self.pool.skipped_formats.items():
            log.warning("arena: %d output(s) left out of pairing: %s", count, reason)
        if self.sequences_left_out:
            log.warning("arena: %d incomplete multi-turn conversation(s) left out of pairing (only complete "
                        "sequences are paired)", self.sequences_left_out)
        self.images = BlindImages(self._store.images_dir, config.image_cache, config.image_side)

    def _sampler(self) -> PairSampler:
        unit_of = contenders(self.pool, self.pair_by)
        try:
            return PairSampler({k: m.targets for k, m in self._matchups.items()}, min_exposure=self.config.min_exposure,
                               rng=self._rng, unit_of=unit_of)
        except ValueError:
            raise ConfigError(
                "nothing to pair by model: every challenge here has outputs of one model only (targets: "
                f"{', '.join(sorted(unit_of))}); pair by target to compare the providers of one model"
            ) from None

    def _refresh_pool(self) -> None:
        """Take up a freshly loaded pool (see :class:`~harness.arena.pool.PoolRefresher`): a new sampler over
        its matchups, and the counts re-read from the store, which also makes other workers' pairs and votes
        count here (so the serving cap holds across workers within one interval)."""
        polled = self._refresher.poll(self._store)
        if polled is None:
            return
        sequences = with_sequences(self._store, polled, self.config.targets)
        fresh = sequences.pool
        previous = self.pool, self._matchups, self.sampler, self.turns, self.sequences_left_out
        try:
            if not fresh.matchups:
                raise ConfigError("no complete sequence left to pair")
            matchups = fresh.by_key()
            self.pool, self._matchups = fresh, matchups
            self.turns, self.sequences_left_out = sequences.turns, sequences.left_out
            self.sampler = self._sampler()
        except ConfigError as exc:
            self.pool, self._matchups, self.sampler, self.turns, self.sequences_left_out = previous
            log.warning("arena: pool not refreshed, the current one is kept: %s", exc)
            return
        self._load_counts()

    def _load_counts(self) -> None:
        for matchup, left, right, count in vote_store.served_counts(self._store):
            self.sampler.note_served(matchup, left, right, count)
        for left, right, outcome, count in vote_store.vote_tallies(self._store):
            self.sampler.note_vote(left, right, outcome, count)
        self.recognition = Recognition(self.config.max_servings, arena_seen.serving_counts(self._store),
                                       arena_seen.output_hashes(self._store))

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

    def _identities(self, voter: str, address: str) -> tuple[str, ...]:
        memory = self.config.reveal_memory
        if memory == "off":
            return ()
        if memory == "voter":
            return (voter,)
        return voter, arena_seen.address_identity(self._store, address)

    def _pick(self, entries: list[Entry]) -> Entry:
        """The least served of ``entries`` (chance breaks ties), spreading servings under the cap."""
        fewest = min(self.recognition.servings[e.sha256] for e in entries)
        return self._rng.choice([e for e in entries if self.recognition.servings[e.sha256] == fewest])

    def _plan(self, voter: str, address: str) -> _Plan | None:
        """Two outputs for ``voter``: never broken, over the serving cap, or in a group (same picture) that
        was revealed to the voter's cookie or address; None when no matchup has two such targets. (A commit
        that finds one of them unservable after rendering makes the next plan avoid it.)"""
        self._refresh_pool()
        identities = self._identities(voter, address)
        seen = self.recognition.groups(arena_seen.revealed_to(self._store, identities))
        allowed: dict[str, dict[str, list[Entry]]] = {}
        for key, matchup in self._matchups.items():
            by_target = {t: kept for t, entries in matchup.entries.items()
                         if (kept := [e for e in entries if self.recognition.servable(e.sha256, seen)])}
            if len(by_target) >= 2:
                allowed[key] = by_target
        servings = self.recognition.servings
        reuse = {k: {t: min(servings[e.sha256] for e in entries) for t, entries in by_target.items()}
                 for k, by_target in allowed.items()}
        choice = self.sampler.choose_among(allowed, reuse)
        if choice is None:
            return None
        matchup = self._matchups[choice.matchup]
        left = self._pick(allowed[choice.matchup][choice.left])
        rights = allowed[choice.matchup][choice.right]
        apart = [e for e in rights if self.recognition.group(e.sha256) != self.recognition.group(left.sha256)]
        right = self._pick(apart or rights)  # two targets may return the very same picture
        return _Plan(matchup, left, right, pair_canvas(matchup.ratio, self.config.image_side), identities)

    def _render(self, plan: _Plan) -> dict[str, int | Exception]:
        """Blind bytes of both sides (cached for the later image requests) and the dHash of any side whose
        hash is not known yet; an exception in place of the hash says that output cannot be shown."""
        found: dict[str, int | Exception] = {}
        for entry in (plan.left, plan.right):
            try:
                data = self.images.get(entry.sha256, entry.ext, plan.canvas)
                if entry.sha256 not in self.recognition.hash_of:
                    found[entry.sha256] = dhash(data)
                for step in self.turns.get(entry.attempt_id, ())[:-1]:
                    self.images.get(step.sha256, step.ext, plan.canvas)
            except Exception as exc:
                found[entry.sha256] = exc  # a sequence with any turn that cannot be shown is left out whole
        return found

    def _commit(self, plan: _Plan, rendered: dict[str, int | Exception], voter: str) -> PairView | None:
        """Record the pair unless rendering showed it must not be served (then None)."""
        fresh = [(sha, h) for sha, h in rendered.items() if isinstance(h, int)]
        for sha, h in fresh:
            self.recognition.add_hash(sha, h)
        if fresh:
            arena_seen.save_output_hashes(self._store, fresh)
        for sha, failure in rendered.items():
            if isinstance(failure, Exception) and sha not in self.recognition.broken:
                self.recognition.broken[sha] = f"{type(failure).__name__}: {failure}"
                log.warning("arena: output %s left out of pairing: it cannot be shown (%s)", sha[:12],
                            self.recognition.broken[sha])
        seen = self.recognition.groups(arena_seen.revealed_to(self._store, plan.identities))
        if not self.recognition.servable_pair(plan.left.sha256, plan.right.sha256, seen):
            return None
        return self._record(plan, voter)

    def _record(self, plan: _Plan, voter: str) -> PairView:
        matchup, left, right = plan.matchup, plan.left, plan.right
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
        side, canvas = self.config.image_side, plan.canvas
        shown: list[tuple[str, Entry | Picture | SequenceTurn, tuple[int, int] | None]] = [
            ("Left", left, canvas), ("Right", right, canvas), *((p.label, p, None) for p in matchup.references)]
        refs = len(matchup.references)
        strips = list(zip(self.turns.get(left.attempt_id, ()), self.turns.get(right.attempt_id, ()), strict=True))
        for left_step, right_step in strips[:-1]:  # the last turn's images are the pair's own left and right
            shown += [(f"Left turn {left_step.turn}", left_step, canvas),
                      (f"Right turn {right_step.turn}", right_step, canvas)]
        images = [vote_store.ServedImage(new_image_id(), label.lower().replace(" ", "-"), item.sha256, item.ext, frame)
                  for label, item, frame in shown]
        vote_store.record_served_pair(self._store, pair, images)
        for image in images:
            self._served_here.put(image.image_id, (image.sha256, image.ext, image.canvas))
        self.sampler.note_served(matchup.key, left.target, right.target)
        self.recognition.note_served(left.sha256, right.sha256)
        views = []
        for img, (label, item, frame) in zip(images, shown, strict=True):
            if frame is None:
                assert not isinstance(item, SequenceTurn)
                frame = blind_size(item.width, item.height, side)
            views.append(ImageView(url=f"/img/{img.image_id}", width=frame[0], height=frame[1], label=label))
        pairs = [(views[2 + refs + 2 * i], views[3 + refs + 2 * i]) for i in range(len(strips) - 1)]
        pairs.append((views[0], views[1]))
        turns = [TurnView(turn=ls.turn, instruction=ls.instruction, left=lv, right=rv)
                 for (ls, _), (lv, rv) in zip(strips, pairs, strict=True)] if strips else []
        return PairView(
            token=self.signer.pair_token(pair.pair_id, voter, pair.expires_at), expires_at=pair.expires_at,
            challenge=ChallengeView(title=matchup.title, prompt=matchup.prompt, kind=matchup.kind,
                                    category=matchup.category, references=views[2:2 + refs]),
            left=views[0], right=views[1], turns=turns,
        )

    async def new_pair(self, voter: str, address: str = "unknown") -> PairView:
        """Serve a fresh blind pair to ``voter`` connecting from ``address`` (recorded in the store before it
        is returned); raises :class:`VoteRejected` (404) when nothing is left that this voter may see."""
        loop = asyncio.get_running_loop()
        for _ in range(SERVE_TRIES):
            plan = await self._on_store(self._plan, voter, address)
            if plan is None:
                break
            rendered = await loop.run_in_executor(self._encoders, self._render, plan)
            view = await self._on_store(self._commit, plan, rendered, voter)
            if view is not None:
                return view
        raise VoteRejected(404, NO_PAIR_LEFT)

    # -- votes -------------------------------------------------------------------------------------------

    def _cast(self, voter: str, address: str, pair_id: str, outcome: Outcome, client_ms: float | None) -> Reveal:
        identities = self._identities(voter, address)
        sides = arena_seen.pair_sides(self._store, pair_id)
        if identities and sides is not None and sides.voter == voter and sides.open:
            seen = self.recognition.groups(arena_seen.revealed_to(self._store, identities))
            if self.recognition.groups((sides.left_sha, sides.right_sha)) & seen:
                raise VoteRejected(409, "this pair shows an image whose makers an earlier vote already revealed to "
                                        "you: load a new pair")
        if skip_store.is_skipped(self._store, pair_id):
            raise VoteRejected(409, "this pair was skipped: load a new pair")
        result = vote_store.cast_vote(self._store, pair_id=pair_id, voter=voter, outcome=outcome,
                                      voted_at=self._clock(), vote_uid=uuid.uuid4().hex, client_ms=client_ms)
        if result.status != "accepted" or result.pair is None or result.vote is None:
            status, message = _REJECTIONS[result.status]
            raise VoteRejected(status, message)
        pair, vote = result.pair, result.vote
        if identities:
            arena_seen.remember_revealed(self._store, identities, (pair.left.sha256, pair.right.sha256),
                                         vote.voted_at)
        self.sampler.note_vote(pair.left.target, pair.right.target, outcome)
        return Reveal(
            vote_id=vote.vote_uid, outcome=outcome,
            left=Contender(target=pair.left.target, model=pair.left.model, provider=pair.left.provider),
            right=Contender(target=pair.right.target, model=pair.right.model, provider=pair.right.provider),
            decision_ms=vote.decision_ms or 0.0, votes_cast=skip_store.voter_tally(self._store, voter).votes,
        )

    async def vote(self, voter: str, token: str, outcome: Outcome, client_ms: float | None = None,
                   address: str = "unknown") -> Reveal:
        """Record a vote on the pair ``token`` stands for; raises :class:`VoteRejected` when the token is
        forged (403), meant for another voter (403), expired (410) or already used (409)."""
        try:
            claims = self.signer.verify_pair_token(token, voter, self._clock())
        except TokenError as exc:
            raise VoteRejected(410 if exc.expired else 403, str(exc)) from None
        return await self._on_store(self._cast, voter, address, claims.pair_id, outcome, client_ms)

    # -- skips and the voter's counter -----------------------------------------------------------------

    def _skip(self, voter: str, pair_id: str, client_ms: float | None) -> Skipped:
        status = skip_store.record_skip(self._store, pair_id=pair_id, voter=voter, skipped_at=self._clock(),
                                        client_ms=client_ms)
        if status != "skipped":
            code, message = _REJECTIONS[status]
            raise VoteRejected(code, message.replace("voted on", "voted on or skipped"))
        tally = skip_store.voter_tally(self._store, voter)
        return Skipped(skipped=True, votes_cast=tally.votes, skips=tally.skips)

    async def skip(self, voter: str, token: str, client_ms: float | None = None) -> Skipped:
        """Record that ``voter`` passed on the pair ``token`` stands for: not a vote, never in the ratings,
        and no names revealed; the pair cannot be voted on afterwards. Raises :class:`VoteRejected` like
        :meth:`vote` (403 forged or another voter's, 409 already voted or skipped, 410 expired)."""
        try:
            claims = self.signer.verify_pair_token(token, voter, self._clock())
        except TokenError as exc:
            raise VoteRejected(410 if exc.expired else 403, str(exc)) from None
        return await self._on_store(self._skip, voter, claims.pair_id, client_ms)

    async def tally(self, voter: str) -> skip_store.VoterTally:
        """Votes and skips of one voter cookie."""
        return await self._on_store(skip_store.voter_tally, self._store, voter)

    # -- images and health -------------------------------------------------------------------------------

    async def image(self, image_id: str) -> bytes | None:
        """Blind bytes behind a public image id, or None when the id is unknown. An id this worker served
        (a browser usually asks for a pair's images on the connection that brought the page) and bytes in
        memory are answered on the event loop; anything else is read on the store thread and the encoders."""
        found = self._served_here.get(image_id)
        if found is None:
            found = await self._on_store(vote_store.served_image, self._store, image_id)
        if found is None:
            return None
        data = self.images.cached(found[0], found[2])
        if data is not None:
            return data
        try:
            return await asyncio.get_running_loop().run_in_executor(self._encoders, self.images.get, *found)
        except Exception as exc:
            log.warning("arena: image %s cannot be shown (%s: %s)", found[0][:12], type(exc).__name__, exc)
            return None

    # -- leaderboard -------------------------------------------------------------------------------------

    def arena_votes(self, store: Store) -> pd.DataFrame:
        """The votes the public leaderboard counts (battle format, oldest first), rated by ``pair_by``, read
        from ``store`` (the leaderboard's own connection, so the read never holds up the store thread)."""
        return vote_store.battles_frame(store, by=self.pair_by, run_ids=self.pool.run_ids,
                                        sources=LEADERBOARD_SOURCES)

    async def health(self) -> Health:
        votes = await self._on_store(vote_store.count_votes, self._store)
        return Health(status="ok", matchups=len(self.pool.matchups), targets=len(self.pool.targets), votes=votes,
                      sequences_left_out=self.sequences_left_out if self._has_sequences() else None)

    def _has_sequences(self) -> bool:
        return self.sequences_left_out > 0 or any(m.kind == MULTI_TURN for m in self.pool.matchups)
