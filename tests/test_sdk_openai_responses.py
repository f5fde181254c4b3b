"""The official ``openai`` SDK holds an image conversation with the sandbox's Responses API unchanged but for
``base_url``: ``client.responses.create`` with the ``image_generation`` tool and ``store=True``, then a second
call with ``previous_response_id``; streaming; OpenAI's errors."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import openai
import pytest
from PIL import Image

from harness.sandbox.servers import SandboxServer
from tests.conftest import photo_like


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sandbox.base_urls()["openai-responses"], api_key="sk-sandbox",
                       max_retries=0) as c:
        yield c


def image_of(response: object) -> Image.Image:
    calls = [item for item in response.output if item.type == "image_generation_call"]  # type: ignore[attr-defined]
    assert len(calls) == 1 and calls[0].status == "completed"
    assert calls[0].result
    return Image.open(io.BytesIO(base64.b64decode(calls[0].result)))


def test_a_two_turn_conversation_continues_by_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.with_raw_response.create(
        model="gpt-4.1", input="Draw a grey cat on a sofa", tools=[{"type": "image_generation"}], store=True)
    assert first.headers["x-request-id"].startswith("req_")
    assert float(first.headers["openai-processing-ms"]) >= 0
    assert "x-sandbox-intended-ms" in first.headers
    one = first.parse()
    assert one.id.startswith("resp_") and one.status == "completed"
    assert image_of(one).size == (1024, 1024)

    two = client.responses.create(model="gpt-4.1", input="Now make the cat orange", previous_response_id=one.id,
                                  tools=[{"type": "image_generation", "size": "1536x1024", "quality": "low"}],
                                  store=True)
    assert two.previous_response_id == one.id
    assert image_of(two).size == (1536, 1024)
    assert two.tool_usage is not None and two.tool_usage.image_gen.output_tokens == 400
    assert two.tool_usage.image_gen.input_tokens_details.image_tokens > 0, "the previous image is an input"
    assert client.responses.retrieve(two.id).id == two.id


def test_an_input_image_is_edited(client: openai.OpenAI) -> None:
    start = "data:image/png;base64," + base64.b64encode(photo_like((96, 64), 3)).decode()
    response = client.responses.create(
        model="gpt-5", tools=[{"type": "image_generation", "output_format": "jpeg"}],
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Give him a hat"},
                                            {"type": "input_image", "image_url": start, "detail": "auto"}]}])
    assert image_of(response).format == "JPEG"


def test_an_unstored_previous_response_is_refused_with_openais_error(client: openai.OpenAI) -> None:
    unstored = client.responses.create(model="gpt-4.1", input="a fox", tools=[{"type": "image_generation"}],
                                       store=False)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4.1", input="again", previous_response_id=unstored.id,
                                tools=[{"type": "image_generation"}])
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert f"Previous response with id '{unstored.id}' not found." in caught.value.message


def test_another_keys_stored_response_is_not_found(sandbox: SandboxServer, client: openai.OpenAI) -> None:
    mine = client.responses.create(model="gpt-4.1", input="a fox", tools=[{"type": "image_generation"}], store=True)
    with openai.OpenAI(base_url=sandbox.base_urls()["openai-responses"], api_key="sk-someone-else",
                       max_retries=0) as other, pytest.raises(openai.BadRequestError, match="not found"):
        other.responses.create(model="gpt-4.1", input="again", previous_response_id=mine.id,
                               tools=[{"type": "image_generation"}])


def test_streaming_yields_partial_images_then_the_completed_response(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4.1", input="a lighthouse", stream=True,
                                          tools=[{"type": "image_generation", "partial_images": 2}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.image_generation_call.partial_image") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert image_of(events[-1].response).size == (1024, 1024)  # type: ignore[union-attr]
    assert events[0].response.id == events[-1].response.id, "a stream names one response throughout"  # type: ignore[union-attr]


def test_a_deleted_response_cannot_be_continued(client: openai.OpenAI) -> None:
    kept = client.responses.create(model="gpt-4.1", input="a fox", tools=[{"type": "image_generation"}], store=True)
    client.responses.delete(kept.id)
    with pytest.raises(openai.BadRequestError, match="not found"):
        client.responses.create(model="gpt-4.1", input="again", previous_response_id=kept.id,
                                tools=[{"type": "image_generation"}])


def test_a_model_that_cannot_call_the_tool_and_a_bad_key_are_refused(sandbox: SandboxServer,
                                                                     client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"not supported with gpt-3\.5-turbo"):
        client.responses.create(model="gpt-3.5-turbo", input="a fox", tools=[{"type": "image_generation"}])
    with openai.OpenAI(base_url=sandbox.base_urls()["openai-responses"], api_key="invalid",
                       max_retries=0) as bad, pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="gpt-4.1", input="a fox", tools=[{"type": "image_generation"}])
