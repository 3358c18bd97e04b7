"""The one HTTP client of the project's jobs: JSON POSTs over kept-open connections, bearer auth read from a named
environment variable, and retries in one place (the server's Retry-After, else exponential backoff with jitter).
The LLM judge, the synthesis jobs (OpenAI-compatible chat completions) and the reward server client use it."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 300.0  # a server asking for longer is not waited for


class ServerError(Exception):
    """A request that failed for good (after its retries, or at once where retrying cannot help)."""


class _Retryable(Exception):
    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


def retry_after_s(header: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_s(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)] (concurrent clients do not retry in step)."""
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def with_retries(call: Callable[[], Any], retries: int, what: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """`call()` until it succeeds, at most `retries` more times after the first; it raises `_Retryable` for what a
    retry can fix. Raises ServerError naming `what` and the last failure."""
    for attempt in range(retries + 1):
        try:
            return call()
        except _Retryable as failure:
            if attempt == retries:
                raise ServerError(f"{what}: {failure} (after {retries + 1} attempts)") from None
            if failure.wait_s is not None and failure.wait_s > RETRY_AFTER_CAP_S:
                raise ServerError(
                    f"{what}: {failure}; the server asks to wait {failure.wait_s:.0f} s, more than "
                    f"{RETRY_AFTER_CAP_S:.0f} s"
                ) from None
            wait = failure.wait_s if failure.wait_s is not None else backoff_s(attempt)
            log.warning("%s: %s; retrying in %.1f s (%d of %d)", what, failure, wait, attempt + 1, retries)
            sleep(wait)


def api_key(variable: str | None, setting: str) -> str | None:
    """The key in `variable`, read where the job runs; a named variable that is unset is an error, not no auth."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ServerError(
            f"{setting} names the environment variable {variable}, which is not set where this job "
            f"runs: export {variable}=... in the job's environment (cluster.env, or the shell that "
            "launches a local run), or unset {setting} for a server without authentication"
        )
    return value


class JsonClient:
    """POSTs of JSON to one server, `concurrency` connections kept open, safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        concurrency: int = 16,
    ):
        import httpx  # here, not at import: a job that asks no server does not need it

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url, self.max_retries = base_url.rstrip("/"), max_retries
        self.http = httpx.Client(
            headers=headers,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def post(
        self, path: str, body: dict, retries: int | None = None, parse: Callable[[Any], Any] = lambda reply: reply
    ) -> Any:
        """`parse` of the JSON reply to POST `body` at `path` (a ValueError, KeyError or TypeError from it means an
        unusable reply, asked again); raises ServerError."""
        import httpx

        url = f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

        def attempt() -> Any:
            try:
                reply = self.http.post(url, json=body)
            except httpx.TimeoutException as error:
                raise _Retryable(f"no reply within the timeout ({type(error).__name__})") from None
            except httpx.TransportError as error:
                raise _Retryable(f"cannot connect ({error})") from None
            if reply.status_code in RETRYABLE_STATUS:
                raise _Retryable(
                    f"HTTP {reply.status_code} {reply.text[:200]!r}", retry_after_s(reply.headers.get("Retry-After"))
                )
            if reply.status_code in (401, 403):
                raise ServerError(
                    f"{url}: HTTP {reply.status_code}: the server refuses the credentials "
                    f"({reply.text[:200]!r}); set the setting api_key_env to the variable holding "
                    "a valid key"
                )
            if reply.status_code >= 400:
                raise ServerError(f"{url}: HTTP {reply.status_code} {reply.text[:300]!r}")
            try:
                decoded = reply.json()
            except ValueError:
                raise _Retryable(f"a reply that is not JSON: {reply.text[:200]!r}") from None
            try:
                return parse(decoded)
            except (ValueError, KeyError, TypeError) as error:
                raise _Retryable(f"an unusable reply ({error!r}): {reply.text[:200]!r}") from None

        return with_retries(attempt, self.max_retries if retries is None else retries, url)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat(
    client: JsonClient,
    model: str,
    prompt: str,
    temperature: float,
    max_tokens: int,
    n: int = 1,
    response_format: dict | None = None,
    seed: int | None = None,
) -> list[str]:
    """`n` completions of one user prompt from an OpenAI-compatible server (`/chat/completions`)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": temperature,
        "max_tokens": max_tokens,
        "n": n,
    }
    if seed is not None:
        body["seed"] = seed
    if response_format:
        body["response_format"] = response_format
    return client.post(
        "chat/completions", body, parse=lambda reply: [str(choice["message"]["content"]) for choice in reply["choices"]]
    )


def openai_client(base_url: str, settings: Any, setting_prefix: str) -> JsonClient:
    """A client for a job's OpenAI-compatible server from its ServerClient settings."""
    return JsonClient(
        base_url,
        api_key=api_key(settings.api_key_env, f"{setting_prefix}.api_key_env"),
        timeout_s=settings.timeout_s,
        max_retries=settings.max_retries,
        concurrency=settings.concurrency,
    )
