"""Returned images: decodable, counted, within the pixel limit, and their size recorded against the size asked.

A right image of another size is a success whose size is recorded as not as asked (an OpenAI-compatible
gateway in front of Gemini answers Google's grid sizes); ``strict`` makes it a ``size_mismatch`` failure. A
header declaring more pixels than the limit fails before a single pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from harness.images import SizeAsked, SizeCheck, check_image, check_images, size_asked
from harness.providers.base import ErrorKind, GenerationRequest, OutputImage, ProviderError
from harness.providers.openai_images import OpenAIImagesProvider
from harness.records import RequestKey
from harness.run.attempt import AttemptContext, attempt_record, perform_attempt
from harness.sandbox.servers import SandboxServer
from harness.targets import Target
from harness.timing import ResponseLimits


def png(width: int, height: int) -> OutputImage:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, format="PNG")
    return OutputImage(out.getvalue(), "image/png")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and whose data is one tiny compressed row: what a
    hostile server sends to make a decoder allocate the declared size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_an_image_of_another_size_succeeds_and_is_recorded_as_not_as_asked() -> None:
    asked = size_asked("1536x1024", None, (1536, 1024))
    checked, size = check_images([png(256, 256)], 1, asked)
    assert [(c.width, c.height) for c in checked] == [(256, 256)]
    assert size == SizeCheck("1536x1024", False)


def test_strict_size_fails_a_mismatch_as_bad_output() -> None:
    with pytest.raises(ProviderError) as caught:
        check_images([png(256, 256)], 1, size_asked("1536x1024", None, None), strict=True)
    assert (caught.value.kind, caught.value.provider_code) == (ErrorKind.BAD_OUTPUT, "size_mismatch")
    assert "256x256, asked 1536x1024" in caught.value.message


def test_every_image_must_match_for_the_answer_to_be_as_asked() -> None:
    asked = size_asked("64x32", None, None)
    assert check_images([png(64, 32), png(64, 32)], 2, asked)[1] == SizeCheck("64x32", True)
    assert check_images([png(64, 32), png(32, 64)], 2, asked)[1] == SizeCheck("64x32", False)


def test_a_ratio_is_matched_by_the_documented_pixels_or_within_one_percent() -> None:
    # Google documents 1344x768 for 16:9 (1.75, 1.6 % from 16/9): with the adapter's expected size it matches.
    google = size_asked(None, "16:9", (1344, 768))
    assert google is not None and google.label == "16:9"
    assert google.matches(1344, 768) and not google.matches(1280, 720)
    ratio_only = size_asked(None, "16:9", None)
    assert ratio_only is not None
    assert ratio_only.matches(1280, 720) and ratio_only.matches(1920, 1085)
    assert not ratio_only.matches(1344, 768)


def test_a_tier_without_a_shape_and_no_expected_size_asks_nothing() -> None:
    assert size_asked("2K", None, None) is None
    assert size_asked(None, None, None) is None
    assert check_images([png(8, 8)], 1, None)[1] == SizeCheck(None, None)
    assert size_asked("2K", None, (2048, 2048)) == SizeAsked("2048x2048", (2048, 2048), 1.0)


@given(st.integers(1, 20000), st.integers(1, 20000))
def test_a_pixel_size_asked_matches_exactly_that_size(width: int, height: int) -> None:
    asked = size_asked(f"{width}x{height}", "1:1", None)
    assert asked is not None and asked.label == f"{width}x{height}"
    assert asked.matches(width, height)
    assert not asked.matches(width + 1, height) and not asked.matches(width, height + 1)


@given(st.text(max_size=30), st.text(max_size=30))
def test_any_size_text_is_parsed_without_error(size: str, ratio: str) -> None:
    asked = size_asked(size, ratio, None)
    assert asked is None or asked.ratio > 0


def test_too_few_images_is_still_a_failure() -> None:
    with pytest.raises(ProviderError, match=r"expected 2 image\(s\), got 1"):
        check_images([png(8, 8)], 2, None)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (9000, 9000)],
                         ids=["past-pillows-own-check", "past-the-harness-limit-only"])
def test_a_header_declaring_too_many_pixels_fails_before_decoding(width: int, height: int) -> None:
    image = OutputImage(png_header_only(width, height), "image/png")
    with pytest.raises(ProviderError) as caught:
        check_image(image, 0, ResponseLimits().max_image_pixels)
    assert (caught.value.kind, caught.value.provider_code) == (ErrorKind.BAD_OUTPUT, "image_too_large")


def test_the_pixel_limit_is_per_call_and_leaves_pillow_global_alone() -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ProviderError, match="pixel limit"):
        check_image(png(100, 100), 0, max_pixels=100 * 99)
    assert check_image(png(100, 100), 0, max_pixels=100 * 100).width == 100
    assert before == Image.MAX_IMAGE_PIXELS


def test_a_non_image_is_bad_output_naming_its_first_bytes() -> None:
    with pytest.raises(ProviderError, match="not a decodable image") as caught:
        check_image(OutputImage(b"<html>502 Bad Gateway</html>"), 0)
    assert "<html>" in caught.value.message


@pytest.mark.anyio
async def test_a_sandbox_answer_of_another_size_is_recorded_not_failed_unless_strict(
        sandbox: SandboxServer, client: httpx.AsyncClient) -> None:
    """Through the real path (adapter, TimedHttp, perform_attempt, attempt_record) against the sandbox's
    ``wrong_size`` fault."""
    provider = OpenAIImagesProvider(OpenAIImagesProvider.sandbox_base_url(sandbox.root, {}), "sandbox-key")
    req = GenerationRequest(model_id="gpt-image-1", prompt="a fox [sandbox-fault:wrong_size]", size="1536x1024")
    lenient = await perform_attempt(provider, req, client, 10)
    strict = await perform_attempt(provider, req, client, 10, strict_size=True)
    honest = await perform_attempt(provider, GenerationRequest(model_id="gpt-image-1", prompt="a fox",
                                                               size="1536x1024"), client, 10)

    assert lenient.error is None and lenient.size == SizeCheck("1536x1024", False)
    assert honest.error is None and honest.size == SizeCheck("1536x1024", True)
    assert strict.error is not None
    assert (strict.error.kind, strict.error.provider_code) == (ErrorKind.BAD_OUTPUT, "size_mismatch")
    assert strict.size == SizeCheck("1536x1024", None)

    target = Target(name="gpt@sandbox", model="gpt-image-1", provider="openai", protocol="openai-images",
                    base_url=provider.base_url)
    ctx = AttemptContext(run_id="r", key=RequestKey("c", "default", target.name, 0), target=target, attempt=1,
                         started_at=0.0, sched_ms=0.0, start_ms=0.0)
    records = [attempt_record(o, ctx) for o in (lenient, honest, strict)]
    assert [(r.ok, r.size_requested, r.size_as_asked) for r in records] == [
        (True, "1536x1024", False), (True, "1536x1024", True), (False, "1536x1024", None)]
