"""OpenAI chat request -> Vertex AI Gemini ``generateContent`` request body. Pure, no I/O: the
request half of ``app.backends.gemini_translate``, which the client imports.

The output is the REST body exactly as the wire carries it (camelCase): ``contents``,
``systemInstruction``, ``generationConfig``, ``tools``, ``toolConfig``. See
``app.backends.gemini_translate`` for why the translators work on wire JSON.

Choices (each a 400 from here, never a silent drop, when Gemini cannot honour a field):
- system and developer messages become ``systemInstruction`` (text only);
- consecutive turns of the same Gemini role are merged (tool results and the next user
  message share one ``user`` turn, as Gemini expects for parallel calls);
- tool parameters go as ``parametersJsonSchema`` and ``json_schema`` response formats as
  ``responseJsonSchema``: plain JSON Schema, no lossy conversion to Gemini's ``Schema``;
- a tool call's Gemini ``thoughtSignature`` travels through OpenAI clients as
  ``extra_content.google.thought_signature`` (the shape Google's own OpenAI endpoint uses);
  Gemini 3+ rejects replayed calls without one, so a missing signature is replaced by
  Google's documented ``skip_thought_signature_validator`` sentinel for those models;
- unsupported: ``logit_bias``, audio output (``modalities``/``audio``), legacy
  ``functions``/``function_call`` and the ``function`` role, ``web_search_options``,
  OpenAI file ids, audio formats other than those in ``AUDIO_FORMATS``, non-function tools.
  ``reasoning_effort``, ``parallel_tool_calls``, ``user``, ``metadata`` and other unknown
  fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from app.errors import InvalidRequestError, UnsupportedFeatureError
from app.openai_wire import Json

SIGNATURE_SENTINEL = "skip_thought_signature_validator"
AUDIO_FORMATS = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "aiff": "audio/aiff",
}
EXTENSION_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "mp4": "video/mp4",
    "mov": "video/mov",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "flac": "audio/flac",
}
TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*?;base64,(?P<data>.*)", re.DOTALL)
GEMINI_MAJOR = re.compile(r"gemini-(\d+)")


def to_gemini_request(request: Json) -> Json:
    """The ``generateContent`` body for an OpenAI chat request.

    Raises ``UnsupportedFeatureError`` (with ``param``) for what Gemini cannot do and
    ``InvalidRequestError`` for malformed input (bad data URLs, unknown tool call ids).
    """
    reject_unsupported(request)
    system, contents = convert_messages(request.get("messages") or [], str(request.get("model") or ""))
    body: Json = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = convert_tools(request.get("tools"))
    if tools:
        body["tools"] = tools
    tool_config = convert_tool_choice(request.get("tool_choice"))
    if tool_config:
        body["toolConfig"] = tool_config
    config = generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def reject_unsupported(request: Json) -> None:
    """400 for OpenAI fields Gemini has no equivalent for."""
    if request.get("logit_bias"):
        raise UnsupportedFeatureError("Gemini has no logit_bias.", param="logit_bias")
    if request.get("audio") or "audio" in (request.get("modalities") or ()):
        param = "audio" if request.get("audio") else "modalities"
        raise UnsupportedFeatureError("Gemini chat models do not produce audio output.", param=param)
    for legacy in ("functions", "function_call"):
        if request.get(legacy):
            raise UnsupportedFeatureError(f"`{legacy}` is deprecated; use `tools`.", param=legacy)
    if request.get("web_search_options") is not None:
        raise UnsupportedFeatureError(
            "Web search is not offered through this model.", param="web_search_options"
        )
    if request.get("top_logprobs") is not None and not request.get("logprobs"):
        raise InvalidRequestError("`top_logprobs` needs `logprobs: true`.", param="top_logprobs")


# --- messages ---------------------------------------------------------------------------
def convert_messages(messages: list[Json], model: str) -> tuple[list[Json], list[Json]]:
    """(system parts, contents): roles mapped, tool results named, same-role turns merged."""
    system: list[Json] = []
    contents: list[Json] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system += [{"text": t} for t in text_only(message.get("content"), f"{where}.content")]
            continue
        if role == "user":
            turn = ("user", user_parts(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            turn = ("model", assistant_parts(message, where, call_names, model))
        elif role == "tool":
            turn = ("user", [tool_result_part(message, where, call_names)])
        elif role == "function":
            raise UnsupportedFeatureError(
                "The legacy `function` role is not supported; use `tool`.", param=where
            )
        else:
            raise InvalidRequestError(f"Unknown message role {role!r}.", param=f"{where}.role")
        append_turn(contents, *turn)
    if not contents:
        raise InvalidRequestError("At least one user or assistant message is required.", param="messages")
    return system, contents


def append_turn(contents: list[Json], role: str, parts: list[Json]) -> None:
    """Adds a turn, merging it into the previous one when the role is the same."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def text_only(content: Any, where: str) -> list[str]:
    """The texts of a system/assistant message's content (string or text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise UnsupportedFeatureError(f"Only text is accepted here, not {kind!r}.", param=f"{where}[{j}]")
        text = part.get(kind) or ""
        if text:
            texts.append(text)
    return texts


def user_parts(content: Any, where: str) -> list[Json]:
    """A user message's content as Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [content_part(part, f"{where}[{j}]") for j, part in enumerate(content)]


def content_part(part: Any, where: str) -> Json:
    """One OpenAI content part: text, image_url, input_audio or file."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return media_part(str(url or ""), f"{where}.image_url.url", default_type="image/jpeg")
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        mime = AUDIO_FORMATS.get(str(audio.get("format")))
        if mime is None:
            raise UnsupportedFeatureError(
                f"Audio format {audio.get('format')!r} is not supported; use one of {sorted(AUDIO_FORMATS)}.",
                param=f"{where}.input_audio.format",
            )
        return {
            "inlineData": {
                "mimeType": mime,
                "data": checked_base64(audio.get("data"), f"{where}.input_audio.data"),
            }
        }
    if kind == "file":
        return file_part(part.get("file") or {}, f"{where}.file")
    raise UnsupportedFeatureError(f"Content part type {kind!r} is not supported.", param=f"{where}.type")


def media_part(url: str, where: str, default_type: str) -> Json:
    """A data URL as ``inlineData``; an http(s) or gs:// URL as ``fileData``."""
    match = DATA_URL.fullmatch(url)
    if match:
        return {"inlineData": {"mimeType": match["mime"], "data": checked_base64(match["data"], where)}}
    if url.startswith(("https://", "http://", "gs://")):
        return {"fileData": {"mimeType": guess_type(url, default_type), "fileUri": url}}
    raise InvalidRequestError("Expected a base64 data URL or an http(s):// or gs:// URL.", param=where)


def file_part(file: Json, where: str) -> Json:
    if file.get("file_id"):
        raise UnsupportedFeatureError(
            "OpenAI file ids cannot reach Gemini; send file_data.", param=f"{where}.file_id"
        )
    data = str(file.get("file_data") or "")
    if data.startswith("data:"):
        return media_part(data, f"{where}.file_data", default_type="application/pdf")
    mime = guess_type(str(file.get("filename") or ""), "application/pdf")
    return {"inlineData": {"mimeType": mime, "data": checked_base64(data, f"{where}.file_data")}}


def checked_base64(data: Any, where: str) -> str:
    """``data`` unchanged when it is valid base64, else a 400 naming ``where``."""
    try:
        if not data:
            raise ValueError("empty")
        base64.b64decode(data, validate=True)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRequestError("Expected non-empty base64 data.", param=where) from None
    return str(data)


def guess_type(url: str, default: str) -> str:
    """A MIME type from the URL's extension (a fixed table: stable across hosts)."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return EXTENSION_TYPES.get(extension, default)


# --- tool calls and results ---------------------------------------------------------------
def assistant_parts(message: Json, where: str, call_names: dict[str, str], model: str) -> list[Json]:
    """Text, then one ``functionCall`` part per tool call (args parsed from JSON)."""
    parts: list[Json] = [{"text": t} for t in text_only(message.get("content"), f"{where}.content")]
    needs_sentinel = gemini_major(model) >= 3
    for k, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        name = function.get("name")
        if not name:
            raise InvalidRequestError("A tool call needs a function name.", param=f"{where}.tool_calls[{k}]")
        call_names[str(call.get("id"))] = name
        part: Json = {
            "functionCall": {"name": name, "args": parse_arguments(function.get("arguments"), where, k)}
        }
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if signature or (needs_sentinel and k == 0):
            part["thoughtSignature"] = signature or SIGNATURE_SENTINEL
        parts.append(part)
    return parts


def parse_arguments(arguments: Any, where: str, k: int) -> Json:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        raise InvalidRequestError(
            "Tool call arguments must be JSON.", param=f"{where}.tool_calls[{k}].function.arguments"
        ) from None
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def tool_result_part(message: Json, where: str, call_names: dict[str, str]) -> Json:
    """A ``functionResponse`` named after the earlier call with the same id."""
    call_id = str(message.get("tool_call_id"))
    name = call_names.get(call_id)
    if name is None:
        raise InvalidRequestError(f"No earlier tool call has id {call_id!r}.", param=f"{where}.tool_call_id")
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(text_only(content, f"{where}.content"))
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    return {
        "functionResponse": {
            "name": name,
            "response": value if isinstance(value, dict) else {"result": value},
        }
    }


def gemini_major(model: str) -> int:
    match = GEMINI_MAJOR.search(model)
    return int(match.group(1)) if match else 0


# --- tools and generation config --------------------------------------------------------------
def convert_tools(tools: Any) -> list[Json]:
    """OpenAI function tools as one Gemini ``Tool`` with ``functionDeclarations``."""
    declarations = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise UnsupportedFeatureError(f"Tool type {kind!r} is not supported.", param=f"tools[{i}].type")
        function = tool.get("function") or {}
        if not function.get("name"):
            raise InvalidRequestError("A function tool needs a name.", param=f"tools[{i}].function.name")
        declaration: Json = {"name": function["name"]}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else []


def convert_tool_choice(choice: Any) -> Json | None:
    """``tool_choice`` as ``toolConfig.functionCallingConfig`` (none/auto/required/a function)."""
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in TOOL_MODES:
            raise InvalidRequestError(f"Unknown tool_choice {choice!r}.", param="tool_choice")
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    name = ((choice.get("function") or {}).get("name")) if isinstance(choice, dict) else None
    if not name or choice.get("type") != "function":
        raise UnsupportedFeatureError(
            "tool_choice must be none, auto, required or a function.", param="tool_choice"
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def generation_config(request: Json) -> Json:
    """``generationConfig``: sampling, limits, stops, candidates, logprobs, response format."""
    config = {wire: request[key] for key, wire in SAMPLING.items() if request.get(key) is not None}
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.get("n") not in (None, 1):
        config["candidateCount"] = request["n"]
    if request.get("logprobs"):
        config["responseLogprobs"] = True
        if request.get("top_logprobs"):
            config["logprobs"] = request["top_logprobs"]
    config.update(response_format(request.get("response_format")))
    return config


def response_format(fmt: Any) -> Json:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                "json_schema needs a `schema` object.", param="response_format.json_schema.schema"
            )
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    raise UnsupportedFeatureError(f"response_format {kind!r} is not supported.", param="response_format")
