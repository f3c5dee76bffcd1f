"""Every inbound API through its real client: the openai SDK (Responses, embeddings, models), the
OpenAI Agents SDK and the anthropic SDK, against a running proxy and fake upstreams of each
provider format (OpenAI, Anthropic, Gemini), with named models and model="auto"."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_answers import EMBED_DIMS
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
# One named model per upstream wire format, and auto.
MODELS = ["openai/gpt-4.1-nano", "anthropic/claude-sonnet-4", "google/gemini-2.5-flash", "auto"]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    app = create_app(make_settings(policy_dir=policy_copy(tmp_path), master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def new_key(server: ThreadedServer, **fields: object) -> str:
    r = httpx.post(server.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={"name": "sdk", **fields}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture
def key(server: ThreadedServer) -> str:
    return new_key(server)


def oai(server: ThreadedServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


def claude(server: ThreadedServer, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0, timeout=20)


def upstream_formats(upstream: FakeUpstream) -> set[str]:
    return {"anthropic" if r.path.endswith("/messages") else "gemini" if ":" in r.path else "openai" for r in upstream.received}


# ── Responses ────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("model", MODELS)
def test_responses_plain_and_stream(server: ThreadedServer, key: str, upstream: FakeUpstream, model: str) -> None:
    client = oai(server, key)
    raw = client.responses.with_raw_response.create(model=model, input="What is the capital of France?", instructions="Be brief.")
    r = raw.parse()
    assert r.output_text == upstream.reply and r.status == "completed" and r.usage.total_tokens > 0
    assert raw.headers["x-autoroute-decision-id"].startswith("dec_") and raw.headers["x-autoroute-model"]
    assert model == "auto" or r.model == model
    assert "Be brief." in str(upstream.received[-1].body)  # instructions reached the model
    with client.responses.stream(model=model, input="Say hello") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert final.output_text == upstream.reply and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["openai/gpt-4.1-nano", "anthropic/claude-sonnet-4", "auto"])
def test_responses_tool_round_trip_with_previous_response_id(server: ThreadedServer, key: str, upstream: FakeUpstream, model: str) -> None:
    client = oai(server, key)
    first = client.responses.create(model=model, input="Weather in Paris?", tools=[TOOL])
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and '"Paris"' in call.arguments
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        tools=[TOOL],
    )
    assert second.output_text == upstream.reply and second.previous_response_id == first.id
    sent = str(upstream.received[-1].body)
    assert "Weather in Paris?" in sent and "sunny, 21C" in sent  # the stored turn was replayed
    assert client.responses.retrieve(second.id).id == second.id
    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)


def test_stored_responses_belong_to_their_key_and_store_false_is_honoured(server: ThreadedServer, key: str) -> None:
    mine = oai(server, key).responses.create(model="openai/gpt-4.1-nano", input="hi")
    other = oai(server, new_key(server))
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError) as info:
        other.responses.create(model="openai/gpt-4.1-nano", input="go on", previous_response_id=mine.id)
    assert info.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(mine.id)
    oai(server, key).responses.retrieve(mine.id)  # still there for its owner
    unstored = oai(server, key).responses.create(model="openai/gpt-4.1-nano", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        oai(server, key).responses.retrieve(unstored.id)


def test_agents_sdk_runs_a_tool_agent_with_auto(
    server: ThreadedServer, key: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.usage
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai.types.responses.response_usage import InputTokensDetails

    # openai-agents 0.20 (the version that takes both openai 2.x and mcp 2) builds
    # InputTokensDetails without the cache_write_tokens field openai 2.54 requires, before any
    # request: give the field its default in the class it uses.
    class _InputTokensDetails(InputTokensDetails):
        cache_write_tokens: int = 0

    monkeypatch.setattr(agents.usage, "InputTokensDetails", _InputTokensDetails)

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    model = OpenAIResponsesModel(model="auto", openai_client=openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0))
    agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=model)
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert calls == ["Paris"] and result.final_output == upstream.reply
    assert "sunny in Paris" in str(upstream.received[-1].body)


# ── Anthropic Messages ───────────────────────────────────────────────────────────────
ATOOL = {"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "openai/gpt-4.1-nano", "google/gemini-2.5-flash", "auto"])
def test_messages_create_stream_and_tool_round_trip(server: ThreadedServer, key: str, upstream: FakeUpstream, model: str) -> None:
    client = claude(server, key)
    msg = client.messages.create(model=model, max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": "Hi there"}])
    assert msg.content[0].text == upstream.reply and msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == upstream.reply and final.usage.output_tokens > 0
    turn = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=200, tools=[ATOOL], messages=turn)
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input == {"city": "Paris"}
    turn += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(model=model, max_tokens=200, tools=[ATOOL], messages=turn) as stream:
        assert "".join(stream.text_stream) == upstream.reply
    assert "sunny" in str(upstream.received[-1].body)


def test_messages_stream_tool_use_and_count_tokens(server: ThreadedServer, key: str) -> None:
    client = claude(server, key)
    with client.messages.stream(model="auto", max_tokens=100, tools=[ATOOL], messages=[{"role": "user", "content": "Weather?"}]) as s:
        final = s.get_final_message()
    assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}
    small = client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "hi"}]).input_tokens
    big = client.messages.count_tokens(model="claude-sonnet-4-20250514", messages=[{"role": "user", "content": "hi " * 500}]).input_tokens
    assert 0 < small < big


def test_messages_errors_are_anthropic_shaped(server: ThreadedServer, key: str) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        claude(server, "sk-ar-wrong").messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude(server, key).messages.create(model="gemini-9-nonexistent", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["type"] == "error" and nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.post(server.url + "/v1/messages", headers={"authorization": f"Bearer {key}"}, json={"model": "auto", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# ── Embeddings and models ────────────────────────────────────────────────────────────
@pytest.mark.parametrize("model", ["openai/text-embedding-3-small", "text-embedding-3-large", "google/gemini-embedding-001", "auto"])
def test_embeddings(server: ThreadedServer, key: str, upstream: FakeUpstream, model: str) -> None:
    client = oai(server, key)
    out = client.embeddings.create(model=model, input=["alpha", "beta", "alpha"])
    assert [d.index for d in out.data] == [0, 1, 2] and len(out.data[0].embedding) == EMBED_DIMS
    assert out.data[0].embedding == out.data[2].embedding != out.data[1].embedding
    if model == "auto":
        assert out.model == "openai/text-embedding-3-small"  # the policy's embedding_model, every time
    short = client.embeddings.create(model=model, input="alpha", dimensions=4)
    assert len(short.data[0].embedding) == 4
    b64 = httpx.post(
        server.url + "/v1/embeddings",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "input": "alpha", "encoding_format": "base64"},
    )
    raw = base64.b64decode(b64.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(out.data[0].embedding)


def test_embeddings_bad_dimensions_and_unknown_model(server: ThreadedServer, key: str) -> None:
    client = oai(server, key)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="openai/text-embedding-3-small", input="x", dimensions=99999)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="x")


def test_models_retrieve(server: ThreadedServer, key: str) -> None:
    client = oai(server, key)
    listed = [m.id for m in client.models.list()]
    assert "auto" in listed and "openai/text-embedding-3-small" in listed
    for model_id in listed:
        assert client.models.retrieve(model_id).id == model_id
    assert client.models.retrieve("claude-sonnet-4-20250514").id == "anthropic/claude-sonnet-4"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-17")
    assert "/v1/models" in info.value.message
    r = httpx.get(server.url + "/v1/assistants")
    assert r.status_code == 404 and "POST /v1/responses" in r.json()["error"]["message"]
