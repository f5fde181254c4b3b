"""What every protocol adapter receives, returns and raises.

An adapter only translates between a :class:`GenerationRequest` and one provider's wire format. Timing,
retries, pacing, image validation and persistence live once, in the runner. An adapter therefore:

* builds HTTP requests and sends them through the :class:`~harness.timing.TimedHttp` it is given (never its
  own client), labelling each call (``generate``, ``submit``, ``status``, ``result``, ``download``);
* marks protocol-specific clock points on that client (``ttfb`` for a streaming protocol's first event,
  ``queued``/``running``/``completed`` for queue APIs);
* returns a :class:`GenerationResult` with the raw image bytes (downloaded when the provider gave URLs), or
  raises :class:`ProviderError` with a kind from :class:`ErrorKind` and the provider's own code and message.

Error taxonomy (every failure of an attempt is exactly one of these)::

    ErrorKind
    ├── rate_limited       429 / RESOURCE_EXHAUSTED that will clear with time (retryable)
    ├── quota_exhausted    billing or quota used up (429 insufficient_quota, 402): retrying will not help
    ├── auth               missing, invalid or unauthorised key (401, 403, Gemini 400 API_KEY_INVALID)
    ├── invalid_request    the request itself is wrong (400/404/413/422 that are not safety)
    ├── refused            the provider's safety system declined the prompt or the output
    ├── no_image           a success status that carries no image (text-only answer)
    ├── server_error       5xx, or a provider-side generation failure (retryable)
    ├── timeout            no complete answer within the configured connect/read/total timeout
    ├── connection         connection refused, reset or a body cut short
    └── bad_output         an image was returned but is corrupt, not an image, or of the wrong size/count
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.challenges import ChallengeKind as ChallengeKind  # re-exported for adapters
from harness.challenges import InputImage as InputImage
from harness.origins import OriginPolicy, RefusedURL, reset_policy, use_policy
from harness.outcomes import ErrorKind as ErrorKind
from harness.redaction import Redactor, redact_exception

if TYPE_CHECKING:
    from harness.timing import TimedHttp


REFUSED_URL = "refused_url"
"""``provider_code`` of a failure caused by a provider-named URL the origin rules refuse (a private address,
a scheme other than http(s), a status URL on a foreign origin)."""
KEY_IN_OUTPUT = "key_in_output"
"""``provider_code`` of an image refused because it carries the target's API key."""
OFF_LOOP_BYTES = 256 * 1024
"""Images larger than this in total are searched for the key in a worker thread (about 1 ms per MB), so the
event loop keeps stamping other responses' arrivals."""
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def non_image(data: bytes) -> str | None:
    """``None`` when ``data`` starts like an image format the harness accepts (PNG, JPEG, GIF, WebP, AVIF/HEIF),
    else a short reason. Only the type and size of a non-image answer are ever recorded, never its bytes."""
    if not data:
        return ", empty"
    if data.startswith(IMAGE_SIGNATURES):
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None
    if data[4:8] == b"ftyp":
        return None
    return ""


def redact_provider_error(exc: ProviderError, redactor: Redactor) -> None:
    """Remove the key from every text a :class:`ProviderError` carries, in place."""
    if not redactor:
        return
    exc.message = redactor.text(exc.message)
    exc.args = (exc.message,)
    if exc.provider_code is not None:
        exc.provider_code = redactor.text(exc.provider_code)
    if exc.request_id is not None:
        exc.request_id = redactor.text(exc.request_id)
    exc.usage = redactor.value(exc.usage)


def multi_turn_refusal(protocol: str) -> str:
    """Why a target of ``protocol`` is not given multi-turn challenges (its adapter keeps no conversation)."""
    return f"protocol {protocol!r} cannot run multi-turn challenges yet: its adapter keeps no conversation"


class ProviderError(Exception):
    """A failed attempt, classified.

    ``provider_code`` and ``message`` keep the provider's own words (e.g. ``moderation_blocked``,
    ``RESOURCE_EXHAUSTED``) so nothing is lost by the classification. ``retry_after_s`` is the wait the
    provider asked for (``Retry-After``, ``retry-after-ms``, Gemini ``RetryInfo``), in seconds.
    ``billed`` says whether the provider charges for this failure (e.g. a safety block after generation).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        provider_code: str | None = None,
        retry_after_s: float | None = None,
        request_id: str | None = None,
        billed: bool = False,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.provider_code = provider_code
        self.retry_after_s = retry_after_s
        self.request_id = request_id
        self.billed = billed
        self.usage = dict(usage or {})

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.kind.value!r}, {self.message!r}, http_status={self.http_status}, "
            f"provider_code={self.provider_code!r})"
        )


@dataclass(frozen=True)
class Exchange:
    """One earlier turn of a conversation, as a later turn's request resends it: what the user sent (the
    turn's instruction and images) and the model's reply exactly as the provider returned it.

    ``reply`` is the protocol's own message object, kept verbatim so that everything the provider asks to get
    back unchanged comes back unchanged (Gemini's ``thoughtSignature`` on the parts of Gemini 3 image models,
    https://ai.google.dev/gemini-api/docs/thought-signatures; OpenRouter's assistant ``images`` and
    ``reasoning_details``, https://openrouter.ai/docs/features/multimodal/image-generation)."""

    prompt: str
    references: tuple[InputImage, ...]
    reply: Mapping[str, Any]


@dataclass(frozen=True)
class GenerationRequest:
    """One logical request: a resolved challenge prompt for one target.

    ``size`` is a pixel size such as ``"1024x1024"`` or a resolution tier such as ``"1K"``; ``aspect_ratio``
    is ``"W:H"``. Adapters map both onto the provider's own parameters. ``options`` are the target's extra
    wire parameters (``quality``, ``output_format`` …) passed through unchanged.
    """

    model_id: str
    prompt: str
    kind: ChallengeKind = ChallengeKind.TEXT_TO_IMAGE
    references: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Exchange, ...] = ()
    """The conversation so far (multi-turn challenges), oldest first; empty for a single request. Only a
    target whose adapter keeps a conversation (:meth:`Provider.keeps_conversation`) accepts one."""


@dataclass(frozen=True)
class OutputImage:
    """Image bytes as received (base64 decoded, or downloaded from the returned URL)."""

    data: bytes
    mime: str | None = None
    source_url: str | None = None


@dataclass
class GenerationResult:
    """What a successful exchange produced, before the runner validates the images.

    ``expected_size`` is the ``(width, height)`` the provider documents for the requested parameters, or
    ``None`` when it cannot be known; the runner fails the attempt as ``bad_output`` on a mismatch.
    ``usage`` holds provider token counts (``input_tokens``, ``output_tokens``, ``image_tokens`` …).
    ``provider_cost_usd`` is a cost the provider itself reported (OpenRouter ``usage.cost``).
    ``billable_units`` is fal's ``X-Fal-Billable-Units``. ``provider_timings`` keeps the provider's own
    timings in seconds as it reported them (Replicate ``metrics``, fal ``metrics``/``timings``, timestamps).
    """

    images: list[OutputImage]
    request_id: str | None = None
    expected_size: tuple[int, int] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    provider_cost_usd: float | None = None
    billable_units: float | None = None
    provider_timings: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    finish_reason: str | None = None
    reply: dict[str, Any] | None = None
    """The model's message as the provider returned it (Gemini ``candidates[0].content``, OpenRouter
    ``choices[0].message``; a stream's chunks merged into one), for the next turn of a conversation. Set by
    adapters that take :attr:`GenerationRequest.history`."""


class Provider(abc.ABC):
    """A wire protocol. Subclasses are registered by name in :mod:`harness.providers.registry`.

    ``base_url`` and ``api_key`` come from the target. The key is only ever put in request headers, only for
    URLs on the target's credential origins (:mod:`harness.origins`), and never appears in anything an adapter
    returns or raises: :meth:`generate` removes it (and its encodings) from every error and result, whatever
    the provider echoed, and refuses an image that carries it.

    Subclasses implement :meth:`exchange`; :meth:`generate`, which the runner calls, wraps it.
    """

    protocol: ClassVar[str]
    """Registry name, e.g. ``"openai-images"``."""

    multi_turn: ClassVar[bool] = False
    """Whether the adapter keeps conversation state (:attr:`GenerationRequest.history`,
    :attr:`GenerationResult.reply`) and so can run multi-turn challenges."""

    @classmethod
    def keeps_conversation(cls, options: Mapping[str, Any]) -> bool:
        """Whether a target of this protocol with target options ``options`` runs multi-turn challenges:
        :attr:`multi_turn` unless the adapter makes it a target option (OpenAI Images' ``conversation``)."""
        return cls.multi_turn

    credential_headers: ClassVar[tuple[str, ...]] = ("authorization",)
    """Header names that carry the key in this protocol (lower case); dropped on any redirect to an origin
    that is not a credential origin (with the standard names in :data:`harness.origins.CREDENTIAL_HEADERS`)."""

    def __init__(self, base_url: str, api_key: str, options: Mapping[str, Any] | None = None, *,
                 policy: OriginPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.options: dict[str, Any] = dict(options or {})
        self.redactor = Redactor.for_keys([api_key])
        self.policy = policy or self.origin_policy(self.base_url)
        """Where the key may go and what provider-named URLs may reach (see :mod:`harness.origins`)."""

    @classmethod
    def credential_urls(cls, base_url: str) -> tuple[str, ...]:
        """URLs whose origins receive the key: the base URL's, plus any the protocol documents as the same
        service (fal's queue and run hosts)."""
        return (base_url,)

    @classmethod
    def origin_policy(cls, base_url: str, *, extra_origins: Sequence[str] = (),
                      allow_private_network: bool | None = None) -> OriginPolicy:
        """The policy for a target of this protocol at ``base_url`` (see :meth:`OriginPolicy.for_urls`)."""
        return OriginPolicy.for_urls([*cls.credential_urls(base_url.rstrip("/")), *extra_origins],
                                     credential_headers=cls.credential_headers,
                                     allow_private_network=allow_private_network)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """An adapter written before :meth:`exchange` existed overrides ``generate``: its method becomes the
        exchange, so the origin policy and redaction of :meth:`generate` still apply to it."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("generate")
        if own is not None and "exchange" not in cls.__dict__:
            cls.exchange = own  # type: ignore[method-assign]
            cls.generate = Provider.generate  # type: ignore[method-assign]

    async def generate(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        """Perform one logical request through ``http`` under this target's origin policy; raise
        :class:`ProviderError` on failure. Nothing returned or raised holds the key."""
        conversation = request.history or request.kind == ChallengeKind.MULTI_TURN
        if conversation and not self.keeps_conversation(self.options):
            raise ProviderError(ErrorKind.INVALID_REQUEST, multi_turn_refusal(self.protocol))
        token = use_policy(self.policy)
        try:
            result = await self.exchange(request, http)
        except ProviderError as exc:
            redact_provider_error(exc, self.redactor)
            raise
        except RefusedURL as exc:
            raise ProviderError(ErrorKind.BAD_OUTPUT, self.redactor.text(exc.reason),
                                provider_code=REFUSED_URL) from None
        except Exception as exc:
            redact_exception(exc, self.redactor)
            raise
        finally:
            reset_policy(token)
        self.redactor.fields_in_place(result, skip=("images",))
        if sum(len(image.data) for image in result.images) > OFF_LOOP_BYTES:
            await asyncio.to_thread(self._check_images, result)
        else:
            self._check_images(result)
        return result

    async def vet(self, result: GenerationResult) -> GenerationResult:
        """A result that arrived outside :meth:`generate` (a batch job's line) made safe as :meth:`generate`
        makes its own: the key removed from its fields, anything not an image or carrying the key refused."""
        self.redactor.fields_in_place(result, skip=("images",))
        if sum(len(image.data) for image in result.images) > OFF_LOOP_BYTES:
            await asyncio.to_thread(self._check_images, result)
        else:
            self._check_images(result)
        return result

    def _check_images(self, result: GenerationResult) -> None:
        """Refuse anything that is not an image (recording only its type and size) and any image that carries
        the key."""
        for i, image in enumerate(result.images):
            problem = non_image(image.data)
            if problem is not None:
                raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {i} is not an image ({image.mime or 'no type'}, "
                                    f"{len(image.data)} bytes{problem})", request_id=result.request_id)
            if self.redactor.contains(image.data):
                raise ProviderError(ErrorKind.BAD_OUTPUT, f"image {i} contains this target's API key; not kept",
                                    provider_code=KEY_IN_OUTPUT, request_id=result.request_id)

    @abc.abstractmethod
    async def exchange(self, request: GenerationRequest, http: TimedHttp) -> GenerationResult:
        """The protocol's own exchange for one logical request; raise :class:`ProviderError` on failure."""

    @classmethod
    @abc.abstractmethod
    def sandbox_base_url(cls, sandbox_root: str, options: Mapping[str, Any]) -> str:
        """The base URL of this protocol's embedded sandbox server, given the sandbox's root URL
        (``http://127.0.0.1:PORT``) and the target's options (fal's ``mode`` picks queue or sync host)."""
