"""Offline token counting for generations that arrive without usage (Langfuse's ``tokenCount``).

OpenAI models use the o200k_base / cl100k_base encodings shipped inside ``bpe-openai``; Claude models use the
legacy Claude BPE shipped inside the ``anthropic`` 0.37 package (read with ``tokenizers``). Nothing is
downloaded. Encodings load on first use and stay cached.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources
from typing import Any

import orjson

# Reply priming that OpenAI's chat format adds once per conversation.
REPLY_PRIMING_TOKENS = 3


@cache
def _openai_encoding(tokenizer_model: str) -> Any:
    import bpe_openai

    try:
        return bpe_openai.encoding_for_model(tokenizer_model)
    except Exception:  # unknown model names fall back like Langfuse does
        return bpe_openai.get_encoding("cl100k_base")


@cache
def _claude_tokenizer() -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(resources.files("anthropic").joinpath("tokenizer.json").read_text())


def _astral_to_hex(text: str) -> str:
    """Langfuse replaces characters outside the BMP by their UTF-8 bytes in hex before encoding."""
    if all(ord(char) <= 0xFFFF for char in text):
        return text
    return "".join(char if ord(char) <= 0xFFFF else char.encode().hex() for char in text)


def _openai_tokens(tokenizer_model: str, text: str) -> int:
    return len(_openai_encoding(tokenizer_model).encode(_astral_to_hex(text)))


def _chat_messages(text: str) -> list[dict[str, Any]] | None:
    """A ChatML message list ([{role, content, name?}] with string content), else None."""
    if not text.startswith("["):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not value or not isinstance(value, list):
        return None
    for message in value:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            return None
    return value


def count_openai(config: dict[str, Any], text: str) -> int | None:
    model = config.get("model")
    if not model:
        return None
    messages = _chat_messages(text)
    per_message, per_name = config.get("tokens_per_message"), config.get("tokens_per_name")
    if messages is None or per_message is None or per_name is None:
        return _openai_tokens(model, text)
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += per_message
        for key, value in message.items():
            total += _openai_tokens(model, value if isinstance(value, str) else orjson.dumps(value).decode())
            if key == "name":
                total += per_name
    return total


def count_claude(text: str) -> int:
    return len(_claude_tokenizer().encode(unicodedata.normalize("NFKC", text)).ids)


def count_tokens(tokenizer: dict[str, Any] | None, text: str | None) -> int | None:
    """Tokens of a stored (stringified) input or output under a model's tokenizer; None when unknown."""
    if not tokenizer or not text:
        return None
    if tokenizer.get("id") == "openai":
        return count_openai(tokenizer, text)
    if tokenizer.get("id") == "claude":
        return count_claude(text)
    return None
