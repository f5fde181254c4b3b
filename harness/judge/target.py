"""A judge target, ``MODEL@PROVIDER``: a chat model that takes images, through one of our adapters."""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.errors import ConfigError

PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openrouter": ("https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
    "google": ("https://generativelanguage.googleapis.com", ("GOOGLE_API_KEY", "GEMINI_API_KEY")),
}
"""Providers a judge can be asked through: default base URL and the environment variables holding the key
(OpenRouter's OpenAI-compatible chat completions with image input,
https://openrouter.ai/docs/features/multimodal/images; the Gemini API's generateContent, where
``GOOGLE_API_KEY`` takes precedence over ``GEMINI_API_KEY`` as in Google's SDK). See
:mod:`harness.judge.backends`."""


@dataclass(frozen=True)
class JudgeTarget:
    """``model`` (the provider's id, e.g. ``google/gemini-2.5-flash``) at ``provider``."""

    model: str
    provider: str

    @property
    def spec(self) -> str:
        return f"{self.model}@{self.provider}"

    @classmethod
    def parse(cls, text: str) -> JudgeTarget:
        """Parse ``MODEL@PROVIDER`` (the last ``@`` splits), refusing a provider no judge adapter serves."""
        model, at, provider = text.strip().rpartition("@")
        if not at or not model or not provider:
            raise ConfigError(f"--judge {text!r}: expected MODEL@PROVIDER, e.g. google/gemini-2.5-flash@openrouter")
        if provider not in PROVIDERS:
            raise ConfigError(f"--judge {text!r}: no judge adapter for provider {provider!r}; available: "
                              + ", ".join(sorted(PROVIDERS)))
        return cls(model, provider)

    def default_base_url(self) -> str:
        return PROVIDERS[self.provider][0]

    def api_key(self) -> str | None:
        """The key from the provider's own environment variable (never stored, logged or reported)."""
        return next((os.environ[v] for v in PROVIDERS[self.provider][1] if os.environ.get(v)), None)

    def key_variables(self) -> tuple[str, ...]:
        return PROVIDERS[self.provider][1]


FAMILIES: tuple[tuple[str, str], ...] = (
    ("gemini", "google"), ("nano-banana", "google"), ("imagen", "google"), ("google/", "google"),
    ("gpt", "openai"), ("dall-e", "openai"), ("openai/", "openai"), ("flux", "black-forest-labs"),
    ("black-forest", "black-forest-labs"), ("stable-diffusion", "stability"), ("sd-", "stability"),
    ("stability", "stability"), ("claude", "anthropic"), ("llama", "meta"), ("qwen", "qwen"),
)
"""Model family by substring of a model id: what self-preference compares (a Gemini judge on Gemini
outputs)."""


def family_of(model: str) -> str:
    """The model family of an id (its provider prefix, or the id itself, when no known name matches)."""
    lowered = model.lower()
    return next((family for key, family in FAMILIES if key in lowered), lowered.split("/", 1)[0])
