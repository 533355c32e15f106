"""A teacher model behind any OpenAI-compatible server (vLLM, llama.cpp server, Ollama), configured by URL.

Only ``/v1/chat/completions`` or ``/v1/completions`` are used, over httpx with a timeout; no OpenAI account
or SDK is needed. Every failure (refused, slow, HTTP error, unreadable answer) is a ``TeacherError`` that
says what went wrong, so the proposal fails with that reason and the service keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from constraints.errors import PrompterError


class TeacherError(PrompterError):
    pass


@dataclass(frozen=True)
class TeacherReply:
    text: str
    tokens: int  # prompt + completion tokens as the server reports them (0 if it does not)


def endpoint(url: str, api: str) -> str:
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return f"{base}/v1/chat/completions" if api == "chat" else f"{base}/v1/completions"


def ask(
    url: str,
    prompt: str,
    model: str = "default",
    api: str = "chat",
    max_tokens: int = 256,
    timeout_s: float = 60.0,
    api_key: str | None = None,
) -> TeacherReply:
    target = endpoint(url, api)
    body: dict = {"model": model, "max_tokens": max_tokens, "temperature": 0}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(target, json=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        raise TeacherError(f"the teacher at {target} did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise TeacherError(f"the teacher at {target} is unreachable: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise TeacherError(f"the teacher at {target} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        payload = response.json()
        choice = payload["choices"][0]
        text = choice["message"]["content"] if api == "chat" else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise TeacherError(f"the teacher at {target} sent an answer without choices: {response.text[:200]}") from None
    if not isinstance(text, str) or not text.strip():
        raise TeacherError(f"the teacher at {target} sent an empty answer")
    usage = payload.get("usage") or {}
    tokens = int(usage.get("total_tokens") or 0) if isinstance(usage, dict) else 0
    return TeacherReply(text.strip(), tokens)
