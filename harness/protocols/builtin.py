"""The protocols that ship with the harness, each listed once.

Mount prefixes come from the protocol's wire module (the one place the adapter, the server and this table
read them from); code is named by ``"module:Class"`` so importing this table imports no adapter or server.
"""

from __future__ import annotations

from harness.protocols.spec import ProtocolSpec
from harness.wire import fal, gemini, openai_images, openai_responses, openrouter, replicate

BUILTIN_SPECS: tuple[ProtocolSpec, ...] = (
    ProtocolSpec(
        name="openai-images", simulated_name="openai",
        description="OpenAI Images API (generations, edits, streaming) and OpenAI-compatible gateways",
        adapter="harness.providers.openai_images:OpenAIImagesProvider",
        server="harness.sandbox.openai_images:OpenAIImagesServer", mount=openai_images.SANDBOX_PREFIX,
        profile="harness.sandbox.profiles:OPENAI",
    ),
    ProtocolSpec(
        name="gemini", description="Gemini API generateContent (Google AI Studio), sync and streaming",
        adapter="harness.providers.gemini:GeminiProvider",
        server="harness.sandbox.gemini:GeminiServer", mount=gemini.SANDBOX_PREFIX,
        profile="harness.sandbox.profiles:GEMINI",
    ),
    ProtocolSpec(
        name="openrouter", description="OpenRouter chat completions with image output",
        adapter="harness.providers.openrouter:OpenRouterProvider",
        server="harness.sandbox.openrouter:OpenRouterServer", mount=openrouter.SANDBOX_PREFIX,
        profile="harness.sandbox.profiles:OPENROUTER",
    ),
    ProtocolSpec(
        name="fal", description="fal queue API (queue.fal.run) and its synchronous host (fal.run)",
        adapter="harness.providers.fal:FalProvider",
        server="harness.sandbox.fal:FalServer", mount=fal.SANDBOX_PREFIX, base_path=fal.SANDBOX_QUEUE,
        profile="harness.sandbox.profiles:FAL",
    ),
    ProtocolSpec(
        name="replicate", description="Replicate predictions API (Prefer: wait, polling, streaming)",
        adapter="harness.providers.replicate:ReplicateProvider",
        server="harness.sandbox.replicate:ReplicateServer", mount=replicate.SANDBOX_PREFIX,
        profile="harness.sandbox.profiles:REPLICATE",
    ),
    ProtocolSpec(
        name="openai-responses",
        description="OpenAI Responses API with the image_generation tool (conversations by previous_response_id)",
        adapter="harness.providers.openai_responses:OpenAIResponsesProvider",
        server="harness.sandbox.openai_responses:OpenAIResponsesServer", mount=openai_responses.SANDBOX_PREFIX,
        profile="harness.sandbox.profiles:OPENAI_RESPONSES",
    ),
)
"""Built-in protocols, in the order listings show them."""
