"""Chat-completion chunks -> the Responses API's server-sent event sequence. Pure (no I/O).

response.created, response.in_progress,
per text:  output_item.added, content_part.added, output_text.delta*, output_text.done,
           content_part.done, output_item.done
per call:  output_item.added, function_call_arguments.delta*, function_call_arguments.done,
           output_item.done
(the MCP tool loop adds its mcp_list_tools and mcp_call items: proxy/api/responses_mcp.py)
response.completed (with usage) | response.incomplete | response.failed (with error)
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.api import responses_wire as wire


class ResponsesEvents:
    def __init__(self, body: dict[str, Any], resp_id: str, model: str) -> None:
        self.response = wire.envelope(resp_id, body, model, "in_progress")
        self.seq = 0  # sequence_number of the next event
        self.text: str | None = None  # the open message item's text (None: no message item yet)
        self.text_item: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> open function_call item
        self.finish_reason: str | None = None
        self.started = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def start(self) -> bytes:
        self.started = True
        snapshot = {**self.response, "output": []}
        return self._event("response.created", response=snapshot) + self._event("response.in_progress", response=snapshot)

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self.start()
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                out += self.text_delta(content)
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def text_delta(self, delta: str) -> bytes:
        out = b""
        if self.text_item is None:
            self.text_item = wire.message_item(wire.new_id("msg"), "", status="in_progress")
            self.text = ""
            index = len(self.response["output"])
            self.response["output"].append(self.text_item)
            out += self._event("response.output_item.added", output_index=index, item=dict(self.text_item))
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event("response.content_part.added", item_id=self.text_item["id"], output_index=index, content_index=0, part=part)
        self.text = (self.text or "") + delta
        index = self.response["output"].index(self.text_item)
        return out + self._event(
            "response.output_text.delta", item_id=self.text_item["id"], output_index=index, content_index=0, delta=delta, logprobs=[]
        )

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        slot = call.get("index", 0)
        fn = call.get("function") or {}
        item = self.calls.get(slot)
        if item is None:
            item = wire.call_item(wire.new_id("fc"), call.get("id") or wire.new_id("call"), fn.get("name") or "", "", "in_progress")
            self.calls[slot] = item
            self.response["output"].append(item)
            out += self._event("response.output_item.added", output_index=len(self.response["output"]) - 1, item=dict(item))
        args = fn.get("arguments")
        if args:
            item["arguments"] += args
            index = self.response["output"].index(item)
            out += self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=args)
        return out

    def add_item(self, item: dict[str, Any]) -> tuple[int, bytes]:
        """Another output item (an MCP one): its index and its output_item.added event."""
        self.response["output"].append(item)
        index = len(self.response["output"]) - 1
        return index, self._event("response.output_item.added", output_index=index, item=dict(item))

    def event(self, kind: str, **fields: Any) -> bytes:
        return self._event(kind, **fields)

    def close_message(self) -> bytes:
        """End the open message item (a tool loop's turn before its tool calls); the next text opens another."""
        item = self.text_item
        if item is None:
            return b""
        out = self._close(self.response["output"].index(item), item)
        self.text_item, self.text = None, None
        return out

    def _close(self, index: int, item: dict[str, Any]) -> bytes:
        out = b""
        item["status"] = "completed"
        if item["type"] == "message":
            text = self.text or ""
            part = {"type": "output_text", "text": text, "annotations": []}
            item["content"] = [part]
            out += self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=item["arguments"])
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _close_items(self) -> bytes:
        out = b""
        for index, item in enumerate(self.response["output"]):
            if item.get("status") == "in_progress" and item["type"] in ("message", "function_call"):
                out += self._close(index, item)
        return out

    def complete(self, usage: dict[str, Any] | None) -> bytes:
        out = (b"" if self.started else self.start()) + self._close_items()
        wire.finish(self.response, self.finish_reason)
        self.response["usage"] = usage
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=self.response)

    def failed(self, code: str, message: str) -> bytes:
        out = b"" if self.started else self.start()
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        return out + self._event("response.failed", response=self.response)
