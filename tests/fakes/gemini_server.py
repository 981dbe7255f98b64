"""A fake Google Gemini API (v1beta REST): a real aiohttp server on 127.0.0.1, in its own thread.

Routes: ``POST /v1beta/models/{model}:generateContent`` and
``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (SSE ``data:`` frames ending in
CRLF CRLF, no ``[DONE]``: the body ends the stream). Each test scripts it per model name
(``fake.script("g-429", Behavior(status=429, retry_after="7"))``); it records every request.

The non-chat surfaces (``media_problems`` checks their bodies):
- ``:embedContent`` / ``:batchEmbedContents`` ("Embeddings", ai.google.dev/api/embeddings:
  EmbedContentRequest, at most 100 requests in a batch, each naming ``models/{model}``);
- ``:generateContent`` with ``responseModalities`` IMAGE (image models: an inline PNG part, and
  ``imageConfig.aspectRatio`` one of the ratios of "Image generation", ai.google.dev/gemini-api/
  docs/image-generation) or AUDIO (TTS models, AUDIO alone, a prebuilt voice of "Speech
  generation", .../docs/speech-generation: an inline ``audio/L16;codec=pcm;rate=24000`` part); an
  inline audio part of a documented type ("Audio understanding", .../docs/audio) is transcribed
  (the answer is the scripted text);
- ``:predict`` for Imagen ("Imagen", .../docs/imagen: one instance, sampleCount 1-4, its ratios);
- ``:predictLongRunning`` for Veo ("Generate videos with Veo", .../docs/video: 16:9 or 9:16,
  durationSeconds, resolution), ``GET /v1beta/models/{model}/operations/{id}`` (done after
  ``Behavior.polls`` polls, or failed with ``video_error``) and ``GET /v1beta/files/{id}:download``
  (the MP4, to the API key only).

There is no official JSON schema for Gemini in shared/specs, so ``request_problems`` checks
bodies against Google's published REST reference for the Gemini API, v1beta:
- "Generating content" (ai.google.dev/api/generate-content): GenerateContentRequest,
  GenerationConfig, ThinkingConfig, GenerateContentResponse, FinishReason, UsageMetadata;
- "Caching" (ai.google.dev/api/caching), where Content, Part, Blob, FunctionCall,
  FunctionResponse, Tool, FunctionDeclaration, ToolConfig and FunctionCallingConfig are defined;
- the "Thought signatures" and "Function calling" guides (ai.google.dev/gemini-api/docs/...):
  signatures come back unchanged on the part they arrived on; the function-response turn
  answers every call of the function-call turn before it;
- "API keys" / troubleshooting: the key goes in the ``x-goog-api-key`` header; errors are
  ``{"error": {"code", "message", "status"}}``.
Problems land in ``spec_errors``, which tests assert empty.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GEMINI_KEY = "AIzaFakeGeminiKey-0123456789abcdefXYZ"

_REQUEST_KEYS = {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction", "generationConfig",
                 "cachedContent"}
_PART_DATA = ("text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
              "codeExecutionResult")
_PART_OTHER = {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
_GENERATION_KEYS = {"stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
                    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
                    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
                    "thinkingConfig", "imageConfig", "mediaResolution"}
_THINKING_KEYS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
_TOOL_KEYS = {"functionDeclarations", "googleSearchRetrieval", "codeExecution", "googleSearch", "urlContext",
              "computerUse", "fileSearch", "googleMaps"}
_DECLARATION_KEYS = {"name", "description", "behavior", "parameters", "parametersJsonSchema", "response",
                     "responseJsonSchema"}
_MODES = {"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass
class Behavior:
    text: str = "Hello from the fake Gemini, one word at a time."
    thoughts: str = ""  # thought-summary text, sent as {text, thought: true} parts
    signature: str | None = None  # a thoughtSignature: on the first functionCall, else on the last text part
    signature_on_empty_part: bool = False  # stream: the signature alone, on a last {text: ""} part
    function_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    call_ids: bool = False  # send functionCall.id (Gemini 3 style); 2.5 sends none
    finish_reason: str = "STOP"
    block_reason: str | None = None  # promptFeedback.blockReason and no candidates
    status: int = 200
    error_message: str = "fake Gemini failure"
    retry_after: str | None = None  # Retry-After header on an error response
    retry_delay: str | None = None  # a 429's RetryInfo.retryDelay in error.details ("7s"); default retry_after or 30
    echo_key_in_error: bool = False
    cut_after: int | None = None  # stream: end the body cleanly after N chunks, before any finishReason
    abort_after: int | None = None  # stream: abort the TCP connection after N chunks
    error_in_stream_after: int | None = None  # stream: an {"error": ...} frame after N chunks
    chunk_delay: float = 0.0
    raw_body: bytes | None = None  # an HTTP 200 whose body (or, streaming, whose one frame's data) is this
    prompt_tokens: int = 12
    cached_tokens: int = 0
    thoughts_tokens: int | None = None  # default: one per word of ``thoughts``
    # the non-chat surfaces
    no_media: bool = False  # an IMAGE / AUDIO request answered with the text only
    polls: int = 2  # a Veo operation is done at the N-th poll
    video_error: str | None = None  # ... and then failed with this message


@dataclass
class Seen:
    model: str
    method: str  # generateContent | streamGenerateContent
    body: dict[str, Any]
    api_key: str | None
    query: dict[str, str]
    at: float


def _b64ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            base64.urlsafe_b64decode(value)
        except (binascii.Error, ValueError):
            return False
    return True


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown field {k!r}" for k in obj if k not in allowed]


def request_problems(body: Any, issued: dict[str, str] | None = None,
                     signatures: set[str] | None = None) -> list[str]:
    """What is wrong with a GenerateContentRequest body. ``issued`` maps a call key (name + args)
    to the signature the fake sent on that functionCall: it must come back on that part;
    ``signatures`` are all it ever sent (with None, any base64 signature passes)."""
    if not isinstance(body, dict):
        return ["body: not a JSON object"]
    errs = _unknown(body, _REQUEST_KEYS, "request")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        errs.append("contents: required, a non-empty list")
        contents = []
    for i, c in enumerate(contents):
        errs += _content_problems(c, f"contents[{i}]", issued or {}, signatures)
    errs += _turn_problems(contents)
    si = body.get("systemInstruction")
    if si is not None:
        if not isinstance(si, dict) or not isinstance(si.get("parts"), list) or not si["parts"]:
            errs.append("systemInstruction: a Content with non-empty parts")
        else:
            errs += _unknown(si, {"parts", "role"}, "systemInstruction")
            errs += [f"systemInstruction.parts[{j}]: only text" for j, p in enumerate(si["parts"])
                     if not isinstance(p, dict) or set(p) != {"text"} or not isinstance(p["text"], str)]
    errs += _generation_problems(body.get("generationConfig"))
    errs += _tool_problems(body.get("tools"), body.get("toolConfig"))
    return errs


def _content_problems(c: Any, where: str, issued: dict[str, str], known: set[str] | None) -> list[str]:
    if not isinstance(c, dict):
        return [f"{where}: not an object"]
    errs = _unknown(c, {"role", "parts"}, where)
    if c.get("role") not in ("user", "model"):
        errs.append(f"{where}.role: must be user or model, got {c.get('role')!r}")
    parts = c.get("parts")
    if not isinstance(parts, list) or not parts:
        return [*errs, f"{where}.parts: required, a non-empty list"]
    for j, p in enumerate(parts):
        errs += _part_problems(p, f"{where}.parts[{j}]", c.get("role"), issued, known)
    return errs


def _part_problems(p: Any, where: str, role: Any, issued: dict[str, str], known: set[str] | None) -> list[str]:
    if not isinstance(p, dict):
        return [f"{where}: not an object"]
    errs = _unknown(p, set(_PART_DATA) | _PART_OTHER, where)
    data = [k for k in _PART_DATA if k in p]
    if len(data) != 1:
        errs.append(f"{where}: exactly one data field of {_PART_DATA} is required, got {data}")
    if "text" in p and not isinstance(p["text"], str):
        errs.append(f"{where}.text: a string")
    if "text" in p and p["text"] == "" and "thoughtSignature" not in p:
        errs.append(f"{where}.text: empty")
    if "thought" in p and not isinstance(p["thought"], bool):
        errs.append(f"{where}.thought: a boolean")
    sig = p.get("thoughtSignature")
    if sig is not None:
        if not _b64ok(sig):
            errs.append(f"{where}.thoughtSignature: bytes, base64-encoded")
        elif known is not None and sig not in known:
            errs.append(f"{where}.thoughtSignature: not a signature this server issued")
        if role != "model":
            errs.append(f"{where}.thoughtSignature: only on model parts")
    blob = p.get("inlineData")
    if blob is not None:
        if not isinstance(blob, dict) or not isinstance(blob.get("mimeType"), str) or not blob["mimeType"]:
            errs.append(f"{where}.inlineData.mimeType: required")
        elif not _b64ok(blob.get("data")):
            errs.append(f"{where}.inlineData.data: required, base64")
        else:
            errs += _unknown(blob, {"mimeType", "data"}, f"{where}.inlineData")
    call = p.get("functionCall")
    if call is not None:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            errs.append(f"{where}.functionCall.name: required")
        else:
            errs += _unknown(call, {"id", "name", "args"}, f"{where}.functionCall")
            if "args" in call and not isinstance(call["args"], dict):
                errs.append(f"{where}.functionCall.args: an object")
            if role != "model":
                errs.append(f"{where}.functionCall: only in model turns")
            want = issued.get(call_key(call["name"], call.get("args") or {}))
            if want is not None and sig != want:
                errs.append(f"{where}: the functionCall lost the thoughtSignature it was issued with")
    resp = p.get("functionResponse")
    if resp is not None:
        if not isinstance(resp, dict) or not isinstance(resp.get("name"), str) or not resp["name"]:
            errs.append(f"{where}.functionResponse.name: required")
        elif not isinstance(resp.get("response"), dict):
            errs.append(f"{where}.functionResponse.response: required, an object")
        else:
            errs += _unknown(resp, {"id", "name", "response", "parts", "willContinue", "scheduling"},
                             f"{where}.functionResponse")
            if role != "user":
                errs.append(f"{where}.functionResponse: only in user turns")
    return errs


def _turn_problems(contents: list[Any]) -> list[str]:
    """A turn with function responses answers every call of the model turn just before it."""
    errs = []
    for i, c in enumerate(contents):
        parts = c.get("parts") if isinstance(c, dict) else None
        if not isinstance(parts, list):
            continue
        responses = [p["functionResponse"].get("name") for p in parts
                     if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)]
        if not responses:
            continue
        prev = contents[i - 1] if i > 0 and isinstance(contents[i - 1], dict) else {}
        calls = [p["functionCall"].get("name") for p in prev.get("parts") or ()
                 if isinstance(p, dict) and isinstance(p.get("functionCall"), dict)]
        if prev.get("role") != "model" or sorted(calls) != sorted(responses):
            errs.append(f"contents[{i}]: function responses {responses} do not answer the calls {calls} "
                        "of the model turn before")
    return errs


def _generation_problems(gc: Any) -> list[str]:
    if gc is None:
        return []
    if not isinstance(gc, dict):
        return ["generationConfig: an object"]
    errs = _unknown(gc, _GENERATION_KEYS, "generationConfig")
    for key in ("maxOutputTokens", "topK", "seed", "candidateCount"):
        if key in gc and (not isinstance(gc[key], int) or isinstance(gc[key], bool)):
            errs.append(f"generationConfig.{key}: an integer")
    for key in ("temperature", "topP"):
        if key in gc and not isinstance(gc[key], int | float):
            errs.append(f"generationConfig.{key}: a number")
    stops = gc.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5
                              or not all(isinstance(s, str) for s in stops)):
        errs.append("generationConfig.stopSequences: up to 5 strings")
    if "responseSchema" in gc and "responseJsonSchema" in gc:
        errs.append("generationConfig: responseSchema and responseJsonSchema are exclusive")
    if "responseJsonSchema" in gc and gc.get("responseMimeType") != "application/json":
        errs.append("generationConfig.responseJsonSchema: needs responseMimeType application/json")
    tc = gc.get("thinkingConfig")
    if tc is not None:
        if not isinstance(tc, dict):
            errs.append("generationConfig.thinkingConfig: an object")
        else:
            errs += _unknown(tc, _THINKING_KEYS, "generationConfig.thinkingConfig")
            if "thinkingBudget" in tc and not isinstance(tc["thinkingBudget"], int):
                errs.append("generationConfig.thinkingConfig.thinkingBudget: an integer")
            if "includeThoughts" in tc and not isinstance(tc["includeThoughts"], bool):
                errs.append("generationConfig.thinkingConfig.includeThoughts: a boolean")
    return errs


def _tool_problems(tools: Any, config: Any) -> list[str]:
    errs: list[str] = []
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            return ["tools: a list"]
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                errs.append(f"tools[{i}]: an object")
                continue
            errs += _unknown(t, _TOOL_KEYS, f"tools[{i}]")
            for j, d in enumerate(t.get("functionDeclarations") or ()):
                where = f"tools[{i}].functionDeclarations[{j}]"
                if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
                    errs.append(f"{where}.name: required")
                    continue
                names.add(d["name"])
                errs += _unknown(d, _DECLARATION_KEYS, where)
                if "parameters" in d and "parametersJsonSchema" in d:
                    errs.append(f"{where}: parameters and parametersJsonSchema are exclusive")
                schema = d.get("parametersJsonSchema")
                if schema is not None and (not isinstance(schema, dict) or schema.get("type") != "object"):
                    errs.append(f"{where}.parametersJsonSchema: must describe an object")
    if config is not None:
        fcc = config.get("functionCallingConfig") if isinstance(config, dict) else None
        if not isinstance(fcc, dict):
            return [*errs, "toolConfig.functionCallingConfig: an object"]
        errs += _unknown(fcc, {"mode", "allowedFunctionNames"}, "toolConfig.functionCallingConfig")
        if fcc.get("mode", "AUTO") not in _MODES:
            errs.append(f"toolConfig.functionCallingConfig.mode: unknown {fcc.get('mode')!r}")
        allowed = fcc.get("allowedFunctionNames")
        if allowed is not None:
            if fcc.get("mode") not in ("ANY", "VALIDATED"):
                errs.append("toolConfig.functionCallingConfig.allowedFunctionNames: only with mode ANY")
            if not isinstance(allowed, list) or not set(allowed) <= names:
                errs.append("toolConfig.functionCallingConfig.allowedFunctionNames: names of declared functions")
    return errs


# thinkingBudget per model family ("Gemini thinking" guide, the budgets table): (lowest budget that
# thinks, highest, whether 0 turns thinking off); None: the model takes no thinkingConfig at all.
# -1 (dynamic) is valid for every model that thinks. Families not listed are not checked.
_THINKING_BUDGETS: tuple[tuple[str, tuple[int, int, bool] | None], ...] = (
    ("gemini-2.5-flash-lite", (512, 24576, True)),
    ("gemini-2.5-flash", (1, 24576, True)),
    ("gemini-2.5-pro", (128, 32768, False)),
    ("gemini-2.0-flash-thinking", (0, 10**9, True)),
    ("gemini-2.0-", None),
    ("gemini-1.", None),
)


def thinking_problems(model: str, body: Any) -> list[str]:
    """What Gemini would refuse in the thinkingConfig of a request to ``model``."""
    gc = body.get("generationConfig") if isinstance(body, dict) else None
    tc = gc.get("thinkingConfig") if isinstance(gc, dict) else None
    if tc is None:
        return []
    rule = next((r for prefix, r in _THINKING_BUDGETS if model.lower().startswith(prefix)), (0, 10**9, True))
    if rule is None:
        return [f"generationConfig.thinkingConfig: {model} does not support thinking"]
    low, high, can_disable = rule
    budget = tc.get("thinkingBudget") if isinstance(tc, dict) else None
    if not isinstance(budget, int) or budget == -1 or (budget == 0 and can_disable) or low <= budget <= high:
        return []
    return [f"generationConfig.thinkingConfig.thinkingBudget: {budget} is outside {low}..{high} for {model}"
            + ("" if can_disable else " (thinking cannot be turned off)")]


def call_key(name: str, args: dict[str, Any]) -> str:
    return name + json.dumps(args, sort_keys=True)


def _words(text: str) -> list[str]:
    out, word = [], ""
    for ch in text:
        word += ch
        if ch == " ":
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


# --- the non-chat surfaces ------------------------------------------------------------------------

VOICES = {"Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe", "Enceladus",
          "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi", "Laomedeia", "Achernar",
          "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia",
          "Sadaltager", "Sulafat"}
IMAGE_RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
IMAGEN_RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9"}
AUDIO_TYPES = {"audio/wav", "audio/mp3", "audio/aiff", "audio/aac", "audio/ogg", "audio/flac"}
TASK_TYPES = {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
              "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}
EMBED_DIMENSIONS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
PCM_RATE = 24000
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free" + b"fake-veo-video" * 8


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG (signature, IHDR, IDAT, IEND, each chunk with its CRC)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tone(seconds: float = 0.1, rate: int = PCM_RATE) -> bytes:
    """A 440 Hz tone, 16-bit little-endian mono PCM."""
    n = int(seconds * rate)
    return struct.pack(f"<{n}h", *(int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(n)))


def vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % 32] / 255 - 0.5, 6) for i in range(dims)]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def embed_problems(model: str, item: Any, where: str, *, batched: bool) -> list[str]:
    """What is wrong with an EmbedContentRequest (in a batch, it must name its model)."""
    if not isinstance(item, dict):
        return [f"{where}: not an object"]
    errs = _unknown(item, {"model", "content", "taskType", "title", "outputDimensionality"}, where)
    if batched and item.get("model") != f"models/{model}":
        errs.append(f"{where}.model: must be 'models/{model}', got {item.get('model')!r}")
    content = item.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        errs.append(f"{where}.content.parts: required, a non-empty list")
    else:
        errs += [f"{where}.content.parts[{j}]: embeddings take text parts" for j, p in enumerate(parts)
                 if not isinstance(p, dict) or set(p) != {"text"} or not isinstance(p["text"], str)]
    if "taskType" in item and item["taskType"] not in TASK_TYPES:
        errs.append(f"{where}.taskType: unknown {item['taskType']!r}")
    if "outputDimensionality" in item and not _positive_int(item["outputDimensionality"]):
        errs.append(f"{where}.outputDimensionality: a positive integer")
    return errs


def modality_problems(model: str, body: Any) -> list[str]:
    """The rules of image and speech generation on a GenerateContentRequest."""
    gc = body.get("generationConfig") if isinstance(body, dict) else None
    gc = gc if isinstance(gc, dict) else {}
    modalities = gc.get("responseModalities") or []
    errs: list[str] = []
    if not isinstance(modalities, list) or not set(modalities) <= {"TEXT", "IMAGE", "AUDIO"}:
        return [f"generationConfig.responseModalities: TEXT, IMAGE or AUDIO, got {modalities!r}"]
    tts, image_model = model.endswith("-tts"), "-image" in model
    if "AUDIO" in modalities and not tts:
        errs.append(f"generationConfig.responseModalities: {model} does not make audio")
    if tts and modalities != ["AUDIO"]:
        errs.append(f"generationConfig.responseModalities: {model} answers AUDIO only")
    if "IMAGE" in modalities and not image_model:
        errs.append(f"generationConfig.responseModalities: {model} does not make images")
    sc = gc.get("speechConfig")
    if sc is not None:
        voice = sc.get("voiceConfig", {}).get("prebuiltVoiceConfig", {}).get("voiceName") \
            if isinstance(sc, dict) and isinstance(sc.get("voiceConfig"), dict) else None
        if not isinstance(sc, dict) or _unknown(sc, {"voiceConfig", "multiSpeakerVoiceConfig", "languageCode"}, ""):
            errs.append("generationConfig.speechConfig: voiceConfig, multiSpeakerVoiceConfig, languageCode")
        elif voice not in VOICES:
            errs.append(f"generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName: {voice!r} "
                        "is not a prebuilt voice")
        if "AUDIO" not in modalities:
            errs.append("generationConfig.speechConfig: only with the AUDIO modality")
    ic = gc.get("imageConfig")
    if ic is not None:
        if not isinstance(ic, dict) or _unknown(ic, {"aspectRatio", "imageSize"}, ""):
            errs.append("generationConfig.imageConfig: aspectRatio, imageSize")
        elif "aspectRatio" in ic and ic["aspectRatio"] not in IMAGE_RATIOS:
            errs.append(f"generationConfig.imageConfig.aspectRatio: {ic['aspectRatio']!r} is not a supported ratio")
    for c in body.get("contents") or () if isinstance(body, dict) else ():
        for p in (c.get("parts") or ()) if isinstance(c, dict) else ():
            blob = p.get("inlineData") if isinstance(p, dict) else None
            if isinstance(blob, dict) and str(blob.get("mimeType", "")).startswith("audio/") \
                    and blob["mimeType"] not in AUDIO_TYPES:
                errs.append(f"inlineData.mimeType: {blob['mimeType']!r} is not an audio type Gemini takes")
            if tts and set(p) != {"text"}:
                errs.append("contents: a TTS model takes text only")
    return errs


def predict_problems(model: str, body: Any) -> list[str]:
    """An Imagen predict request."""
    if not model.startswith("imagen-"):
        return [f"predict: {model} is not an Imagen model"]
    if not isinstance(body, dict):
        return ["predict: not an object"]
    errs = _unknown(body, {"instances", "parameters"}, "predict")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict) \
            or set(instances[0]) != {"prompt"} or not isinstance(instances[0]["prompt"], str):
        errs.append("predict.instances: one instance, {prompt}")
    params = body.get("parameters") or {}
    errs += _unknown(params, {"sampleCount", "aspectRatio", "personGeneration", "imageSize"}, "predict.parameters")
    if "sampleCount" in params and (not _positive_int(params["sampleCount"]) or params["sampleCount"] > 4):
        errs.append("predict.parameters.sampleCount: 1-4")
    if "aspectRatio" in params and params["aspectRatio"] not in IMAGEN_RATIOS:
        errs.append(f"predict.parameters.aspectRatio: {params['aspectRatio']!r} is not one Imagen takes")
    return errs


def veo_problems(model: str, body: Any) -> list[str]:
    """A Veo predictLongRunning request."""
    if not model.startswith("veo-"):
        return [f"predictLongRunning: {model} is not a Veo model"]
    if not isinstance(body, dict):
        return ["predictLongRunning: not an object"]
    errs = _unknown(body, {"instances", "parameters"}, "predictLongRunning")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return [*errs, "predictLongRunning.instances: one instance"]
    inst = instances[0]
    errs += _unknown(inst, {"prompt", "image", "lastFrame", "referenceImages", "video"}, "instances[0]")
    if not isinstance(inst.get("prompt"), str) or not inst["prompt"]:
        errs.append("instances[0].prompt: required")
    image = inst.get("image")
    if image is not None and (not isinstance(image, dict) or set(image) != {"bytesBase64Encoded", "mimeType"}
                              or not _b64ok(image["bytesBase64Encoded"])):
        errs.append("instances[0].image: {bytesBase64Encoded (base64), mimeType}")
    params = body.get("parameters") or {}
    errs += _unknown(params, {"aspectRatio", "durationSeconds", "negativePrompt", "personGeneration", "resolution",
                              "sampleCount", "numberOfVideos", "seed"}, "parameters")
    if "aspectRatio" in params and params["aspectRatio"] not in ("16:9", "9:16"):
        errs.append(f"parameters.aspectRatio: {params['aspectRatio']!r}: 16:9 or 9:16")
    if "resolution" in params and params["resolution"] not in ("720p", "1080p"):
        errs.append(f"parameters.resolution: {params['resolution']!r}: 720p or 1080p")
    low = 5 if model.startswith("veo-2") else 4
    seconds = params.get("durationSeconds")
    if seconds is not None and (not _positive_int(seconds) or not low <= seconds <= 8):
        errs.append(f"parameters.durationSeconds: {seconds!r}, not {low}-8")
    return errs


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


class FakeGemini:
    def __init__(self) -> None:
        self.behaviors: dict[str, Behavior] = {}
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.errors: list[str] = []  # requests refused before any behavior ran (bad key, bad route)
        self.issued: dict[str, str] = {}  # call key -> the signature sent with that functionCall
        self._signatures: set[str] = set()
        self.files: dict[str, tuple[str, bytes]] = {}  # name -> (media type, bytes) served at /media/{name}
        self.file_hits: list[str] = []
        self.operations: dict[str, dict[str, Any]] = {}  # Veo operation name -> {model, polls, behavior}
        self.downloads: list[str] = []  # video files fetched
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, model: str, behavior: Behavior) -> None:
        self.behaviors[model] = behavior

    def seen(self, model: str) -> list[Seen]:
        return [s for s in self.requests if s.model == model]

    def serve(self, name: str, media_type: str, data: bytes) -> str:
        """Serve bytes over plain HTTP (an image URL for the gateway's media fetcher); returns the URL."""
        self.files[name] = (media_type, data)
        return f"{self.base_url}/media/{name}"

    def signature(self, label: str) -> str:
        """A base64 signature the server will accept back (as if it had sent it)."""
        sig = base64.b64encode(f"fake-thought-{label}".encode()).decode()
        self._signatures.add(sig)
        return sig

    # server ------------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1beta/models/{target}", self._generate)
            app.router.add_get("/v1beta/models/{model}/operations/{op}", self._operation)
            app.router.add_get("/v1beta/files/{file}", self._download)
            app.router.add_get("/media/{name}", self._file)
            self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-gemini", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.file_hits.append(name)
        if name not in self.files:
            return web.Response(status=404)
        media_type, data = self.files[name]
        return web.Response(body=data, content_type=media_type)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents",
                          "predict", "predictLongRunning"):
            self.errors.append(f"unknown method {method!r}")
            return web.json_response(error_body(404, f"Method {method} not found"), status=404)
        if "key" in request.query:
            self.spec_errors.append("the API key was sent in the URL")
        if method == "streamGenerateContent" and request.query.get("alt") != "sse":
            self.spec_errors.append("streamGenerateContent without alt=sse")
        if request.content_type != "application/json":
            self.spec_errors.append(f"Content-Type {request.content_type!r}, not application/json")
        try:
            body = await request.json()
        except ValueError:
            self.spec_errors.append("body is not JSON")
            return web.json_response(error_body(400, "Invalid JSON payload received."), status=400)
        key = request.headers.get("x-goog-api-key")
        self.requests.append(Seen(model=model, method=method, body=body, api_key=key, query=dict(request.query),
                                  at=time.time()))
        self.spec_errors.extend(self._problems(model, method, body))
        if key is None:
            self.errors.append("no API key")
            return web.json_response(error_body(403, "Method doesn't allow unregistered callers (callers without "
                                                     "established identity). Please use API Key or other form of "
                                                     "API consumer identity to call this API."), status=403)
        if key != GEMINI_KEY:
            self.errors.append("wrong API key")
            return web.json_response(error_body(400, "API key not valid. Please pass a valid API key."), status=400)
        b = self.behaviors.get(model, Behavior())
        if b.status != 200:
            message = b.error_message + (f" (key {GEMINI_KEY})" if b.echo_key_in_error else "")
            err = error_body(b.status, message)
            if b.status == 429:
                err["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                            "retryDelay": b.retry_delay or f"{b.retry_after or 30}s"}]
            headers = {"Retry-After": b.retry_after} if b.retry_after else None
            return web.json_response(err, status=b.status, headers=headers)
        rid = f"fake-resp-{len(self.requests)}"
        if b.raw_body is not None and method != "streamGenerateContent":
            return web.Response(body=b.raw_body, content_type="application/json")
        if method in ("embedContent", "batchEmbedContents"):
            return web.json_response(self._embeddings(model, method, body))
        if method == "predict":
            count = (body.get("parameters") or {}).get("sampleCount", 1)
            return web.json_response({"predictions": [
                {"bytesBase64Encoded": base64.b64encode(tiny_png()).decode(), "mimeType": "image/png"}
                for _ in range(count)]})
        if method == "predictLongRunning":
            name = f"models/{model}/operations/op{len(self.operations) + 1}x"
            self.operations[name] = {"model": model, "polls": 0, "behavior": b}
            return web.json_response({"name": name})
        if method == "generateContent":
            modalities = (body.get("generationConfig") or {}).get("responseModalities") or []
            if not b.no_media and ("IMAGE" in modalities or "AUDIO" in modalities):
                return web.json_response(self._media_answer(b, model, rid, modalities))
            return web.json_response(self._whole(b, model, rid))
        return await self._stream(request, b, model, rid)

    def _problems(self, model: str, method: str, body: Any) -> list[str]:
        if method in ("generateContent", "streamGenerateContent"):
            return (request_problems(body, self.issued, self._signatures) + thinking_problems(model, body)
                    + modality_problems(model, body))
        if method == "embedContent":
            return embed_problems(model, body, "embedContent", batched=False)
        if method == "batchEmbedContents":
            items = body.get("requests") if isinstance(body, dict) else None
            if not isinstance(items, list) or not 1 <= len(items) <= 100:
                return ["batchEmbedContents.requests: 1-100 EmbedContentRequests"]
            return [e for i, item in enumerate(items)
                    for e in embed_problems(model, item, f"requests[{i}]", batched=True)]
        if method == "predict":
            return predict_problems(model, body)
        return veo_problems(model, body)

    def _embeddings(self, model: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        def one(item: dict[str, Any]) -> dict[str, Any]:
            dims = item.get("outputDimensionality") or EMBED_DIMENSIONS.get(model, 768)
            text = "".join(p.get("text", "") for p in item["content"]["parts"])
            return {"values": vector(text, dims)}
        if method == "embedContent":
            return {"embedding": one(body)}
        return {"embeddings": [one(item) for item in body["requests"]]}

    def _media_answer(self, b: Behavior, model: str, rid: str, modalities: list[str]) -> dict[str, Any]:
        if "AUDIO" in modalities:
            pcm = tone()
            parts: list[dict[str, Any]] = [{"inlineData": {"mimeType": f"audio/L16;codec=pcm;rate={PCM_RATE}",
                                                           "data": base64.b64encode(pcm).decode()}}]
            out = len(pcm) // 2 // 40  # Google counts 25 audio tokens a second
        else:
            parts = [{"text": "Here is the image."},
                     {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(tiny_png()).decode()}}]
            out = 1290  # what one 1024x1024 image counts
        usage = {"promptTokenCount": b.prompt_tokens, "candidatesTokenCount": out,
                 "totalTokenCount": b.prompt_tokens + out}
        return self._envelope(model, rid, parts, "STOP", usage)

    async def _operation(self, request: web.Request) -> web.Response:
        name = f"models/{request.match_info['model']}/operations/{request.match_info['op']}"
        if request.headers.get("x-goog-api-key") != GEMINI_KEY:
            self.spec_errors.append("an operation polled without the API key")
            return web.json_response(error_body(403, "The caller does not have permission"), status=403)
        op = self.operations.get(name)
        if op is None:
            return web.json_response(error_body(404, f"Operation {name} not found"), status=404)
        op["polls"] += 1
        b: Behavior = op["behavior"]
        if op["polls"] < b.polls:
            return web.json_response({"name": name})  # done is false: proto3 JSON leaves it out
        if b.video_error:
            return web.json_response({"name": name, "done": True, "error": {"code": 3, "message": b.video_error}})
        uri = f"{self.base_url}/v1beta/files/{request.match_info['op']}:download?alt=media"
        return web.json_response({"name": name, "done": True, "response": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
            "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}})

    async def _download(self, request: web.Request) -> web.Response:
        name, _, verb = request.match_info["file"].partition(":")
        if verb != "download" or request.query.get("alt") != "media":
            self.spec_errors.append(f"a file fetched as {request.path_qs}, not files/{{id}}:download?alt=media")
        if request.headers.get("x-goog-api-key") != GEMINI_KEY:
            self.spec_errors.append("a video downloaded without the API key")
            return web.json_response(error_body(403, "The caller does not have permission"), status=403)
        self.downloads.append(name)
        return web.Response(body=MP4, content_type="video/mp4")

    # answers -----------------------------------------------------------------------------------

    def _usage(self, b: Behavior, *, final: bool = True) -> dict[str, Any]:
        out = len(_words(b.text)) + len(b.function_calls) if final else 0
        thoughts = b.thoughts_tokens if b.thoughts_tokens is not None else len(_words(b.thoughts))
        usage: dict[str, Any] = {"promptTokenCount": b.prompt_tokens, "candidatesTokenCount": out,
                                 "totalTokenCount": b.prompt_tokens + out + thoughts,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": b.prompt_tokens}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if b.cached_tokens:
            usage["cachedContentTokenCount"] = b.cached_tokens
        return usage

    def _call_parts(self, b: Behavior, first: int) -> list[dict[str, Any]]:
        parts = []
        for n, (name, args) in enumerate(b.function_calls):
            call: dict[str, Any] = {"name": name, "args": args}
            if b.call_ids:
                call["id"] = f"fc-{first + n}"
            part: dict[str, Any] = {"functionCall": call}
            if n == 0 and b.signature:
                part["thoughtSignature"] = b.signature
                self.issued[call_key(name, args)] = b.signature
            parts.append(part)
        return parts

    def _envelope(self, model: str, rid: str, parts: list[dict[str, Any]], finish: str | None,
                  usage: dict[str, Any]) -> dict[str, Any]:
        cand: dict[str, Any] = {"index": 0}
        if parts:
            cand["content"] = {"role": "model", "parts": parts}
        if finish:
            cand["finishReason"] = finish
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": rid}

    def _blocked(self, b: Behavior, model: str, rid: str) -> dict[str, Any]:
        return {"promptFeedback": {"blockReason": b.block_reason, "safetyRatings": []},
                "usageMetadata": {"promptTokenCount": b.prompt_tokens, "totalTokenCount": b.prompt_tokens},
                "modelVersion": model, "responseId": rid}

    def _whole(self, b: Behavior, model: str, rid: str) -> dict[str, Any]:
        if b.block_reason:
            return self._blocked(b, model, rid)
        if b.signature:
            self._signatures.add(b.signature)
        parts: list[dict[str, Any]] = []
        if b.thoughts:
            parts.append({"text": b.thoughts, "thought": True})
        if b.text:
            parts.append({"text": b.text})
            if b.signature and not b.function_calls:
                parts[-1]["thoughtSignature"] = b.signature
        parts += self._call_parts(b, len(self.requests) * 10)
        return self._envelope(model, rid, parts, b.finish_reason, self._usage(b))

    def _frames(self, b: Behavior, model: str, rid: str) -> list[dict[str, Any]]:
        if b.block_reason:
            return [self._blocked(b, model, rid)]
        if b.signature:
            self._signatures.add(b.signature)
        chunks: list[list[dict[str, Any]]] = [[{"text": w, "thought": True}] for w in _words(b.thoughts)]
        chunks += [[{"text": w}] for w in _words(b.text)]
        if b.signature and not b.function_calls:
            if b.signature_on_empty_part or not b.text:
                chunks.append([{"text": "", "thoughtSignature": b.signature}])
            else:
                chunks[-1][0]["thoughtSignature"] = b.signature
        if b.function_calls:
            chunks.append(self._call_parts(b, len(self.requests) * 10))
        if not chunks:
            chunks.append([])
        last = len(chunks) - 1
        return [self._envelope(model, rid, parts, b.finish_reason if n == last else None,
                               self._usage(b, final=n == last)) for n, parts in enumerate(chunks)]

    async def _stream(self, request: web.Request, b: Behavior, model: str, rid: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if b.raw_body is not None:
            await resp.write(b"data: " + b.raw_body + b"\r\n\r\n")
            await resp.write_eof()
            return resp
        try:
            for n, frame in enumerate(self._frames(b, model, rid)):
                if b.cut_after is not None and n >= b.cut_after:
                    break
                if b.abort_after is not None and n >= b.abort_after:
                    assert request.transport is not None
                    await asyncio.sleep(0.05)  # let what was written reach the peer
                    request.transport.abort()
                    return resp
                if b.error_in_stream_after is not None and n >= b.error_in_stream_after:
                    err = error_body(503, f"The model is overloaded. (key {GEMINI_KEY})")
                    await resp.write(b"data: " + json.dumps(err).encode() + b"\r\n\r\n")
                    break
                await resp.write(b"data: " + json.dumps(frame).encode() + b"\r\n\r\n")
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp
