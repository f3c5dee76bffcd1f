"""Anthropic Messages and Gemini generateContent, translated by litellm's transformers.

litellm maps the OpenAI request to the provider's format and the provider's response and
stream events back; the HTTP call is made here on the pooled client, so none of litellm's
general call path (its logging, callbacks, cost map, client construction) runs per request.
A plain request (text turns, a few sampling fields) and a plain answer are translated by
proxy/providers/plain_request.py and plain.py instead, with parity tests against litellm; litellm
is loaded (in a worker thread) the first time a request or an answer needs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from proxy.providers.base import Completion, UpstreamCall, UpstreamError, Usage
from proxy.providers.http import as_httpx, bad_response, mid_stream_error, read_error, transport_error
from proxy.providers.litellm_lib import LazyLitellm, Litellm, NullLogging
from proxy.providers.plain import anthropic_plain, gemini_plain
from proxy.providers.plain_request import anthropic_headers, anthropic_request, gemini_request
from proxy.providers.sse import iter_data

# Request fields that are not model parameters (or that we handle ourselves).
_NOT_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "route"})
DEFAULT_MAX_TOKENS = 4096


def _params(call: UpstreamCall) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = call.body
    params = {k: v for k, v in body.items() if k not in _NOT_PARAMS and v is not None}
    if "max_tokens" not in params and "max_completion_tokens" not in params:
        # Anthropic requires max_tokens; set it from the registry rather than let litellm
        # look the model up in its own map.
        params["max_tokens"] = min(call.model.max_output_tokens or DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS)
    # litellm's Gemini transformer pops system messages off the list it is given: a copy, so
    # the request's own list (a fallback's next attempt renders from it) keeps them.
    return list(body["messages"]), params


Built = tuple[str, dict[str, str], dict[str, Any], Any, Any]


class _TranslatedProvider:
    def __init__(self, lazy: LazyLitellm) -> None:
        self._lazy = lazy

    def _build(self, lt: Litellm, call: UpstreamCall, stream: bool) -> Built:
        """(url, headers, payload, optional_params, messages) for this provider's API."""
        raise NotImplementedError

    def _build_plain(self, call: UpstreamCall) -> Built | None:
        """The same for a plain non-streamed request without litellm (proxy/providers/plain_request.py), else None."""
        messages, params = _params(call)
        built = self._plain_request(call.body["model"], messages, params)
        if built is None:
            return None
        payload, op = built
        return self._plain_url(call), self._plain_headers(call), payload, op, messages

    def _plain_request(self, model: str, messages: Any, params: dict[str, Any]) -> Any:
        """(payload, optional params) of a plain request, or None (plain_request.py's builders)."""
        raise NotImplementedError

    def _plain_url(self, call: UpstreamCall) -> str:
        raise NotImplementedError

    def _plain_headers(self, call: UpstreamCall) -> dict[str, str]:
        raise NotImplementedError

    def _plain_answer(self, call: UpstreamCall, resp: Any, op: Any) -> dict[str, Any] | None:
        """The OpenAI dict of a plain text answer, or None for litellm's full transformer."""
        raise NotImplementedError

    def _to_completion(self, lt: Litellm, call: UpstreamCall, resp: Any, payload: Any, op: Any, messages: Any) -> Any:
        """The upstream response as a litellm ModelResponse."""
        raise NotImplementedError

    def _stream_events(self, lt: Litellm, call: UpstreamCall, resp: Any, op: Any) -> TranslatedStream:
        raise NotImplementedError

    async def _send(self, call: UpstreamCall, url: str, headers: dict[str, str], payload: dict, stream: bool) -> Any:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        resp = await call.pool.send(call, url, raw, orjson.dumps(payload))
        if resp.status_code != 200:
            raise await read_error(resp, call)
        if not stream:
            try:
                await resp.aread()
            except httpx.HTTPError as exc:
                raise transport_error(exc, call) from None
            finally:
                await resp.aclose()
        return resp

    async def complete(self, call: UpstreamCall) -> Completion:
        built = self._build_plain(call)
        if built is None:
            lt = await self._lazy.get()
            try:
                built = self._build(lt, call, stream=False)
            except UpstreamError:
                raise
            except Exception as exc:  # litellm refuses a request it cannot translate
                raise _untranslatable(call, exc) from None
        url, headers, payload, op, messages = built
        resp = await self._send(call, url, headers, payload, stream=False)
        try:
            body = self._plain_answer(call, resp, op)
        except Exception:
            raise bad_response(call, "a response that could not be translated") from None
        if body is None:  # not a plain text answer: litellm's full transformer
            lt = await self._lazy.get()
            try:
                body = completion_dict(self._to_completion(lt, call, resp, payload, op, messages), call.body["model"])
            except Exception:
                raise bad_response(call, "a response that could not be translated") from None
        return Completion(body, Usage.from_openai(body.get("usage")) or Usage(counted=True))

    async def stream(self, call: UpstreamCall) -> TranslatedStream:
        lt = await self._lazy.get()
        try:
            url, headers, payload, op, messages = self._build(lt, call, stream=True)
        except Exception as exc:
            raise _untranslatable(call, exc) from None
        resp = await self._send(call, url, headers, payload, stream=True)
        return self._stream_events(lt, call, resp, op)


class AnthropicProvider(_TranslatedProvider):
    def _build(self, lt: Litellm, call: UpstreamCall, stream: bool):
        cfg, model = lt.anthropic_config, call.body["model"]
        messages, params = _params(call)
        op = cfg.map_openai_params(non_default_params=params, optional_params={}, model=model, drop_params=True)
        payload = cfg.transform_request(model, messages, dict(op), {}, {})
        if stream:
            payload["stream"] = True
        headers = cfg.validate_environment({}, model, messages, op, {}, api_key=call.api_key or "", api_base=None)
        if not call.api_key:
            headers.pop("x-api-key", None)
        return _anthropic_url(call), headers, payload, op, messages

    _plain_request = staticmethod(anthropic_request)

    def _plain_url(self, call: UpstreamCall) -> str:
        return _anthropic_url(call)

    def _plain_headers(self, call: UpstreamCall) -> dict[str, str]:
        return anthropic_headers(call.api_key or "")

    def _plain_answer(self, call: UpstreamCall, resp: Any, op: dict) -> dict[str, Any] | None:
        if op.get("json_mode"):
            return None
        return anthropic_plain(orjson.loads(resp.content), call.body["model"])

    def _to_completion(self, lt, call, resp, payload, op, messages):
        return lt.anthropic_config.transform_response(
            call.body["model"],
            as_httpx(resp),
            lt.model_response(),
            NullLogging(),
            payload,
            messages,
            op,
            {},
            None,
            api_key=None,
            json_mode=op.get("json_mode"),
        )

    def _stream_events(self, lt, call, resp, op):
        parser = lt.anthropic_stream_parser(streaming_response=None, sync_stream=False, json_mode=op.get("json_mode"))
        return TranslatedStream(resp, call, parser, done_event="message_stop")


class GeminiProvider(_TranslatedProvider):
    def _build(self, lt: Litellm, call: UpstreamCall, stream: bool):
        cfg, model = lt.gemini_config, call.body["model"]
        messages, params = _params(call)
        op = cfg.map_openai_params(non_default_params=params, optional_params={}, model=model, drop_params=True)
        payload = lt.gemini_request_body(
            messages=messages,
            model=model,
            custom_llm_provider="gemini",
            litellm_params={},
            cached_content=None,
            optional_params=dict(op),
        )
        return _gemini_url(call, stream), _gemini_headers(call), payload, op, messages

    _plain_request = staticmethod(gemini_request)

    def _plain_url(self, call: UpstreamCall) -> str:
        return _gemini_url(call, stream=False)

    def _plain_headers(self, call: UpstreamCall) -> dict[str, str]:
        return _gemini_headers(call)

    def _plain_answer(self, call: UpstreamCall, resp: Any, op: dict) -> dict[str, Any] | None:
        return gemini_plain(orjson.loads(resp.content), call.body["model"])

    def _to_completion(self, lt, call, resp, payload, op, messages):
        return lt.gemini_config.transform_response(
            call.body["model"], as_httpx(resp), lt.model_response(), NullLogging(), payload, messages, op, {}, None
        )

    def _stream_events(self, lt, call, resp, op):
        parser = lt.gemini_stream_parser(streaming_response=None, sync_stream=False, logging_obj=NullLogging())
        return TranslatedStream(resp, call, parser, done_event=None)


def _anthropic_url(call: UpstreamCall) -> str:
    base = call.deployment.api_base
    return base if base.endswith("/messages") else base + ("/messages" if base.endswith("/v1") else "/v1/messages")


def _gemini_url(call: UpstreamCall, stream: bool) -> str:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{call.deployment.api_base}/v1beta/models/{call.body['model']}:{action}"


def _gemini_headers(call: UpstreamCall) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if call.api_key:
        headers["x-goog-api-key"] = call.api_key
    return headers


class TranslatedStream:
    """Provider stream events -> OpenAI chunk dicts (empty deltas dropped)."""

    def __init__(self, resp: Any, call: UpstreamCall, parser: Any, done_event: str | None) -> None:
        self._resp, self._call, self._parser, self._done_event = resp, call, parser, done_event
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        finished = False
        first = True  # OpenAI's first chunk carries role: assistant; so does ours
        model = self._call.body["model"]
        try:
            async for data in iter_data(self._resp.aiter_raw()):
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise bad_response(self._call, "a stream event that is not JSON") from None
                if not isinstance(event, dict):
                    raise bad_response(self._call, "a stream event that is not an object")
                if event.get("type") == "error" or "error" in event:
                    raise self._stream_error(event)
                if self._done_event and event.get("type") == self._done_event:
                    finished = True
                try:
                    parsed = self._parser.chunk_parser(event)
                except Exception:
                    raise bad_response(self._call, "a stream event that could not be translated") from None
                if parsed is None:
                    continue
                raw_finish = _gemini_finish(event) if self._done_event is None else None
                chunk = chunk_dict(parsed, model, keep_finish=self._done_event is not None or bool(raw_finish))
                if parsed_usage := _usage_of(parsed):
                    self.usage = parsed_usage
                if self._done_event is None and raw_finish:
                    finished = True
                if chunk is not None:
                    if first:
                        first = False
                        for choice in chunk.get("choices") or ():
                            delta = choice.get("delta")
                            if isinstance(delta, dict) and not delta.get("role"):
                                delta["role"] = "assistant"
                    yield chunk
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._call) from None
        finally:
            await self._resp.aclose()
        if not finished:
            dep = self._call.deployment
            raise UpstreamError(dep.provider, dep.id, "stream_cut", f"{dep.id} ended the stream early", model=self._call.model.id)

    async def aclose(self) -> None:
        await self._resp.aclose()

    def _stream_error(self, event: dict[str, Any]) -> UpstreamError:
        return mid_stream_error(self._call, event.get("error"))


def _gemini_finish(event: dict[str, Any]) -> bool:
    candidates = event.get("candidates")
    return isinstance(candidates, list) and any(isinstance(c, dict) and c.get("finishReason") for c in candidates)


def _usage_of(obj: Any) -> Usage | None:
    usage = getattr(obj, "usage", None)
    if usage is None:
        return None
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if v is not None}
    return obj


def _tool_call(tc: Any, with_index: bool) -> dict[str, Any]:
    d = _plain(tc)
    fn = d.get("function") or {}
    out: dict[str, Any] = {
        "id": d.get("id"),
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""},
    }
    if with_index:
        out["index"] = d.get("index", 0)
        out = {k: v for k, v in out.items() if v is not None}
        out["function"] = {k: v for k, v in out["function"].items() if v is not None}
    return out


def completion_dict(mr: Any, model: str) -> dict[str, Any]:
    choices = []
    for ch in mr.choices:
        msg = ch.message
        message: dict[str, Any] = {"role": "assistant", "content": msg.content}
        if getattr(msg, "tool_calls", None):
            message["tool_calls"] = [_tool_call(tc, with_index=False) for tc in msg.tool_calls]
        choices.append({"index": ch.index, "message": message, "finish_reason": ch.finish_reason, "logprobs": None})
    out: dict[str, Any] = {"id": mr.id, "object": "chat.completion", "created": mr.created, "model": model, "choices": choices}
    if usage := _usage_of(mr):
        out["usage"] = usage.as_openai()
    return out


def chunk_dict(parsed: Any, model: str, keep_finish: bool = True) -> dict[str, Any] | None:
    choices = []
    for ch in parsed.choices or ():
        delta = ch.delta
        d: dict[str, Any] = {}
        if getattr(delta, "role", None):
            d["role"] = delta.role
        if getattr(delta, "content", None):
            d["content"] = delta.content
        if getattr(delta, "tool_calls", None):
            d["tool_calls"] = [_tool_call(tc, with_index=True) for tc in delta.tool_calls]
        finish = ch.finish_reason if keep_finish else None
        if d or finish:
            choices.append({"index": ch.index, "delta": d, "finish_reason": finish, "logprobs": None})
    if not choices:
        return None
    return {"id": parsed.id, "object": "chat.completion.chunk", "created": parsed.created, "model": model, "choices": choices}


def _untranslatable(call: UpstreamCall, exc: Exception) -> UpstreamError:
    dep = call.deployment
    return UpstreamError(
        dep.provider,
        dep.id,
        "rejected",
        f"request cannot be sent to {dep.id}: {str(exc)[:200]}",
        status=400,
        model=call.model.id,
    )
