"""Messages out of whatever shape a convention gives them: chat messages with `content`
or `parts`, tool calls and results, JSON strings inside attributes and events. Nothing
here raises on bad content: what cannot be read is noted (`notes`) and skipped."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from lookout.core.events import Message

from .spans import Attrs, as_text, number

__all__ = ["chat_message", "content_text", "event_payload", "json_list", "legacy_content", "loads", "make_message",
           "messages", "number", "parts_text"]


def messages(items: list[Any], where: str, default_role: str | None, notes: list[str]) -> list[Message]:
    found = (chat_message(item, f"{where}[{n}]", default_role, notes) for n, item in enumerate(items))
    return [message for message in found if message]


def event_payload(attrs: Attrs, where: str, notes: list[str]) -> dict[str, Any]:
    """One event's fields, wherever the instrumentation put them: a JSON `body` or
    `gen_ai.event.content` attribute, or plain attributes (which win)."""
    payload: dict[str, Any] = {}
    for key in ("body", "gen_ai.event.content"):
        value = attrs.get(key)
        if isinstance(value, str):
            value = loads(value, f"{where} {key}", notes)
        if isinstance(value, dict):
            payload.update(value)
    payload.update({k: v for k, v in attrs.items() if k not in ("body", "gen_ai.event.content")})
    message = payload.get("message")
    if isinstance(message, str):
        parsed = loads(message, f"{where} message", notes, quiet=True)
        payload["message"] = parsed if isinstance(parsed, dict) else {"content": message}
    return payload


def legacy_content(value: Any, where: str, role: str, notes: list[str]) -> list[Message]:
    """`gen_ai.prompt` / `gen_ai.completion` on the old content events: a JSON list of
    {role, content} messages, or plain text."""
    if isinstance(value, str):
        parsed = loads(value, where, notes, quiet=True)
        value = parsed if isinstance(parsed, list | dict) else value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return messages(value, where, role, notes)
    found = make_message(role, content_text(value), None, where, notes)
    return [found] if found else []


def chat_message(item: Any, where: str, default_role: str | None, notes: list[str]) -> Message | None:
    if not isinstance(item, dict):
        notes.append(f"{where}: not a message object")
        return None
    role = item.get("role") or default_role
    if not isinstance(role, str):
        notes.append(f"{where}: message has no role")
        return None
    if "parts" in item:
        content = parts_text(item["parts"])
    else:
        content = content_text(item.get("content"))
        calls = item.get("tool_calls")
        if content is None and calls:
            # Span event attributes cannot nest, so tool calls often arrive as a JSON string.
            parsed = loads(calls, where, notes, quiet=True) if isinstance(calls, str) else None
            content = as_text({"tool_calls": calls if parsed is None else parsed})
    name = item.get("name") if isinstance(item.get("name"), str) else None
    return make_message(role, content, name, where, notes)


def make_message(role: str, content: str | None, name: str | None, where: str, notes: list[str]) -> Message | None:
    try:
        return Message(role=role, content=content, name=name)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        notes.append(f"{where}: {'.'.join(str(p) for p in problem['loc'])} {problem['msg']}")
        return None


TEXT_PART_TYPES = frozenset({None, "text", "input_text", "output_text"})


def parts_text(parts: Any) -> str | None:
    """A message's text: its text parts; else its tool calls and results written as JSON, so a
    tool-calling turn is not empty. Media and reasoning parts carry no text for scoring."""
    if not isinstance(parts, list):
        return content_text(parts)
    texts: list[str] = []
    calls: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        text = part.get("content", part.get("text"))
        if kind in TEXT_PART_TYPES and isinstance(text, str):
            texts.append(text)
        elif kind == "tool_call_response":
            response = part.get("response", part.get("result"))
            texts.append(response if isinstance(response, str) else as_text(response))
        elif kind == "tool_call":
            calls.append(as_text({"tool_call": {k: part[k] for k in ("id", "name", "arguments") if k in part}}))
    chosen = texts or calls
    return "\n".join(chosen) if chosen else None


def content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return parts_text(content)
    if isinstance(content, dict) and isinstance(content.get("content", content.get("text")), str):
        return content.get("content", content.get("text"))
    return as_text(content)


def json_list(value: Any, key: str, notes: list[str]) -> list[Any] | None:
    """A JSON array attribute (structured arrays too, as events carry them); None when absent
    or unreadable, so an older convention can fill in."""
    if value is None:
        return None
    if isinstance(value, str):
        value = loads(value, key, notes)
        if value is None:
            return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        notes.append(f"{key}: not a JSON array")
        return None
    return value


def loads(text: str, where: str, notes: list[str], *, quiet: bool = False) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if not quiet:
            notes.append(f"{where}: not valid JSON")
        return None
