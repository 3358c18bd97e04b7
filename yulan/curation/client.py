"""The one client every model-backed curation job uses: chat completions from any OpenAI-compatible server
(`vllm serve MODEL` included), standard library only."""

from __future__ import annotations

import json
import urllib.request


class ServerError(Exception):
    pass


def chat(endpoint: str, model: str, prompt: str, temperature: float, max_tokens: int, n: int = 1,
         timeout_s: float = 300.0) -> list[str]:
    """`n` completions of one user prompt; raises ServerError on any failure."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": temperature,
            "max_tokens": max_tokens, "n": n}
    request = urllib.request.Request(endpoint.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return [choice["message"]["content"] for choice in json.loads(reply.read())["choices"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ServerError(f"{endpoint}: {error}") from None
