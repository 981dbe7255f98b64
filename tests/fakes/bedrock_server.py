"""A fake AWS Bedrock runtime (Converse, ConverseStream, InvokeModel): a real aiohttp server on 127.0.0.1 in its
own thread.

What it checks, the way Bedrock would:

- SigV4: every request's signature is recomputed with botocore from the known test credentials
  over the request as received (path as sent, signed headers, body); a mismatch is a 403
  InvalidSignatureException, an unknown key id a 403 UnrecognizedClientException.
- Shapes: each request body (with the modelId of its path) is validated against botocore's own
  service model for bedrock-runtime (``ConverseRequest`` / ``ConverseStreamRequest``), with
  botocore's ParamValidator plus the enum, max and pattern constraints it leaves out; blob
  fields must be valid base64. Every response body and stream event it sends is validated the
  same way against the output shapes. Rules Bedrock enforces beyond the shapes (alternating
  roles, a user turn first, toolConfig when tool blocks appear, tool results answering tool
  uses, document names) are checked too. Problems land in ``spec_errors``.

- InvokeModel (``POST /model/{modelId}/invoke``): the request (modelId, contentType, accept) is
  validated against botocore's ``InvokeModelRequest``, and the body, which is each model's own,
  against the Bedrock user guide's "Inference request parameters and response fields for
  foundation models" (``invoke_problems``): Amazon Titan Text Embeddings V2 (inputText,
  dimensions 256/512/1024, normalize, embeddingTypes), Cohere Embed v3 (texts: 1-96 of at most
  2048 characters, input_type, truncate, embedding_types), Amazon Titan Image Generator v2 and
  Nova Canvas (TEXT_IMAGE: text of 1-512 / 1-1024 characters, 1-5 images, cfgScale 1.1-10,
  quality standard|premium, Titan's listed sizes, Nova's 320-4096 pixels a side in steps of 16,
  at most 4:1 and under 4,194,304 pixels). Embeddings are answered with deterministic vectors,
  images with a small valid PNG.

Each test scripts it per model id (``fake.script("m", Behavior(...))``). ConverseStream answers
are encoded here as application/vnd.amazon.eventstream frames by ``encode_frame``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import math
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.session
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ServiceModel, Shape
from botocore.validate import ParamValidator

ACCESS_KEY_ID = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fakeBedrockSecret/0123456789+abcdefghijKLMN"
TEMP_ACCESS_KEY_ID = "ASIAFAKEBEDROCK00002"
TEMP_SECRET_KEY = "tempBedrockSecret/9876543210+zyxwvutsrqPONM"
SESSION_TOKEN = "FwoGZXIvYXdzEFAKEsessionTOKEN0123456789abcdef"
REGION = "us-east-1"
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                      "Check your AWS Secret Access Key and signing method.")
ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


# --- the event-stream encoder (the fake's side of ConverseStream) ------------------------


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length), prelude CRC32,
    string-typed headers, payload, and the CRC32 of everything before it."""
    raw_headers = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw_headers += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                        json.dumps(body).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, json.dumps({"message": message}).encode())


# --- validation against botocore's service model -----------------------------------------


@cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("bedrock-runtime")


def _prepare(value: Any, shape: Shape, path: str, errors: list[str]) -> Any:
    """A copy of ``value`` with base64 blobs decoded, checking what ParamValidator does not:
    enums, maximums and patterns."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure" and not getattr(shape, "is_document_type", False) and isinstance(value, dict):
        return {k: _prepare(v, shape.members[k], f"{path}.{k}", errors) if k in shape.members else v
                for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: {len(value)} items, more than {meta['max']}")
        return [_prepare(v, shape.member, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if kind == "map" and isinstance(value, dict):
        return {k: _prepare(v, shape.value, f"{path}.{k}", errors) for k, v in value.items()}
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            errors.append(f"{path}: not valid base64")
            return value
    if kind == "string" and isinstance(value, str):
        if "enum" in meta and value not in meta["enum"]:
            errors.append(f"{path}: {value!r} is not one of {meta['enum']}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: longer than {meta['max']}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
    if kind in ("integer", "long", "float", "double") and isinstance(value, int | float) and "max" in meta \
            and value > meta["max"]:
        errors.append(f"{path}: {value} is more than {meta['max']}")
    return value


def shape_errors(shape: Shape, value: Any, label: str) -> list[str]:
    """Every way ``value`` (JSON as sent on the wire) breaks ``shape`` of the official model."""
    errors: list[str] = []
    prepared = _prepare(value, shape, "", errors)
    report = ParamValidator().validate(prepared, shape)
    if report.has_errors():
        errors.append(report.generate_report())
    return [f"{label}: {e}" for e in errors]


def request_errors(operation: str, model_id: str, body: Any) -> list[str]:
    shape = service_model().operation_model(operation).input_shape
    return shape_errors(shape, {"modelId": model_id, **body} if isinstance(body, dict) else body,
                        f"{operation} request") + _semantic_errors(body)


def _semantic_errors(body: dict[str, Any]) -> list[str]:
    """Rules Bedrock enforces that the shapes do not say."""
    errors: list[str] = []
    messages = body.get("messages") or []
    if messages and messages[0].get("role") != "user":
        errors.append("semantic: the first message must be a user message")
    pending: set[str] = set()
    tools_used = False
    for i, m in enumerate(messages):
        if i and messages[i - 1].get("role") == m.get("role"):
            errors.append(f"semantic: messages {i - 1} and {i} have the same role {m.get('role')!r}")
        ids = set()
        for block in m.get("content") or []:
            if "text" in block and not block["text"].strip():
                errors.append(f"semantic: messages[{i}] has a blank text block")
            if "toolUse" in block:
                tools_used = True
                ids.add(block["toolUse"]["toolUseId"])
            if "toolResult" in block:
                tools_used = True
                if block["toolResult"]["toolUseId"] not in pending:
                    errors.append(f"semantic: toolResult {block['toolResult']['toolUseId']!r} answers no toolUse")
            if "document" in block:
                name = block["document"].get("name", "")
                if not re.fullmatch(r"[A-Za-z0-9\-()\[\] ]+", name) or "  " in name:
                    errors.append(f"semantic: document name {name!r} has characters Bedrock refuses")
        pending = ids
    if tools_used and "toolConfig" not in body:
        errors.append("semantic: toolUse/toolResult blocks need a toolConfig")
    return errors


# --- InvokeModel bodies (the Bedrock user guide's model parameter pages) ------------------

TITAN_SIZES = {(1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384), (768, 1280),
               (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896), (576, 448), (768, 1408),
               (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704), (1408, 640), (704, 320), (1152, 640),
               (1173, 640)}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def invoke_problems(model_id: str, body: Any) -> list[str]:
    """What the model of ``model_id`` would refuse in an InvokeModel body."""
    if not isinstance(body, dict):
        return ["InvokeModel: the body is not a JSON object"]
    if "titan-embed-text-v2" in model_id:
        return _titan_embed_problems(body)
    if "cohere.embed" in model_id:
        return _cohere_embed_problems(body)
    if "titan-image-generator" in model_id or "nova-canvas" in model_id:
        return _image_problems(model_id, body)
    return [f"InvokeModel: the fake knows no body for {model_id!r}"]


def _unknown_keys(body: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown field {k!r}" for k in body if k not in allowed]


def _titan_embed_problems(body: dict[str, Any]) -> list[str]:
    errs = _unknown_keys(body, {"inputText", "dimensions", "normalize", "embeddingTypes"}, "titan embed")
    text = body.get("inputText")
    if not isinstance(text, str) or not text or len(text) > 50_000:
        errs.append("titan embed: inputText, 1-50000 characters, is required")
    if "dimensions" in body and body["dimensions"] not in (256, 512, 1024):
        errs.append(f"titan embed: dimensions {body['dimensions']!r} is not 256, 512 or 1024")
    if "normalize" in body and not isinstance(body["normalize"], bool):
        errs.append("titan embed: normalize is a boolean")
    return errs


def _cohere_embed_problems(body: dict[str, Any]) -> list[str]:
    errs = _unknown_keys(body, {"texts", "images", "input_type", "truncate", "embedding_types"}, "cohere embed")
    texts = body.get("texts")
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96:
        errs.append("cohere embed: texts, a list of 1-96 strings, is required")
    elif not all(isinstance(t, str) and len(t) <= 2048 for t in texts):
        errs.append("cohere embed: each text is a string of at most 2048 characters")
    if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering", "image"):
        errs.append(f"cohere embed: input_type {body.get('input_type')!r} is not one Cohere takes")
    if "truncate" in body and body["truncate"] not in ("NONE", "START", "END"):
        errs.append("cohere embed: truncate is NONE, START or END")
    return errs


def _image_problems(model_id: str, body: dict[str, Any]) -> list[str]:
    nova = "nova-canvas" in model_id
    errs = _unknown_keys(body, {"taskType", "textToImageParams", "imageGenerationConfig"}, "image")
    if body.get("taskType") != "TEXT_IMAGE":
        errs.append(f"image: taskType {body.get('taskType')!r}, the fake serves TEXT_IMAGE")
    params = body.get("textToImageParams")
    limit = 1024 if nova else 512
    if not isinstance(params, dict) or not isinstance(params.get("text"), str) \
            or not 1 <= len(params["text"]) <= limit:
        errs.append(f"image: textToImageParams.text, 1-{limit} characters, is required")
    else:
        errs += _unknown_keys(params, {"text", "negativeText", "conditionImage", "controlMode", "controlStrength",
                                       "style"}, "image.textToImageParams")
    config = body.get("imageGenerationConfig") or {}
    errs += _unknown_keys(config, {"numberOfImages", "width", "height", "cfgScale", "seed", "quality"},
                          "image.imageGenerationConfig")
    n = config.get("numberOfImages", 1)
    if not _int(n) or not 1 <= n <= 5:
        errs.append(f"image: numberOfImages {n!r} is not 1-5")
    if config.get("quality", "standard") not in ("standard", "premium"):
        errs.append(f"image: quality {config.get('quality')!r} is not standard or premium")
    cfg = config.get("cfgScale", 8.0)
    if not isinstance(cfg, int | float) or not 1.1 <= cfg <= 10:
        errs.append("image: cfgScale is 1.1-10")
    width, height = config.get("width", 1024), config.get("height", 1024)
    if not _int(width) or not _int(height):
        return [*errs, "image: width and height are integers"]
    if nova:
        if not (320 <= width <= 4096 and 320 <= height <= 4096 and width % 16 == 0 and height % 16 == 0
                and max(width, height) <= 4 * min(width, height) and width * height < 4_194_304):
            errs.append(f"image: {width}x{height} is not a size Nova Canvas makes")
    elif (width, height) not in TITAN_SIZES:
        errs.append(f"image: {width}x{height} is not a size Titan Image Generator makes")
    return errs


def embedding_vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % 32] / 255 - 0.5, 6) for i in range(dims)]


def tiny_png() -> bytes:
    """A valid 2x2 RGB PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x00\x80\xff" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# --- SigV4 -------------------------------------------------------------------------------

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})")


def signature_problem(method: str, raw_path: str, headers: Any, body: bytes,
                      keys: dict[str, tuple[str, str | None]], region: str) -> tuple[str, str] | None:
    """(error type, message) when the request's SigV4 signature is not right, else None.

    The expected signature is recomputed with botocore over the request as received."""
    match = _AUTH.fullmatch(headers.get("Authorization", ""))
    if match is None:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    key_id, day, scope_region, service, signed, signature = match.groups()
    if key_id not in keys:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    secret, token = keys[key_id]
    amz_date = headers.get("X-Amz-Date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
    if abs(time.time() - when.timestamp()) > 300 or not amz_date.startswith(day):
        return "InvalidSignatureException", "Signature expired or dated outside its credential scope"
    if scope_region != region or service != "bedrock":
        return "InvalidSignatureException", f"Credential should be scoped to {region}/bedrock"
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        return "InvalidSignatureException", "host and x-amz-date must be signed"
    if token is not None and (headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in names):
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    if any(n not in headers for n in names):
        return "InvalidSignatureException", SIGNATURE_MISMATCH
    request = AWSRequest(method=method, url=f"http://{headers['Host']}{raw_path}", data=body,
                         headers={n: headers[n] for n in names})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret, token), service, scope_region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if signer.signed_headers(signer.headers_to_sign(request)) != signed or not hmac.compare_digest(expected,
                                                                                                   signature):
        return "InvalidSignatureException", SIGNATURE_MISMATCH
    return None


# --- scripting ---------------------------------------------------------------------------


@dataclass
class Behavior:
    text: str = "Hello from the fake Bedrock."
    reasoning: str = ""
    signature: str = "EqQBCkYIARgCIkC0fakeSignature=="
    redacted: str | None = None  # base64 of a redacted reasoning block, sent before any reasoning text
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, JSON arguments)
    stop_reason: str | None = None  # default: tool_use with tool calls, else end_turn
    stop_sequence: str | None = None  # in additionalModelResponseFields when asked for
    status: int = 200
    error_type: str = "ServiceUnavailableException"
    error_message: str = "fake bedrock failure"
    retry_after: str | None = None
    echo_secret_in_error: bool = False
    exception_after: int | None = None  # stream: an exception message instead of event N
    exception_type: str = "throttlingException"
    drop_after: int | None = None  # stream: cut the TCP connection after N events
    end_after: int | None = None  # stream: end the body cleanly after N events
    piece: int | None = None  # stream: write the frames in pieces of this many bytes
    linger: float = 0.0  # stream: keep the body open this long after the last event
    input_tokens: int = 20
    cache_read: int = 5
    cache_write: int = 3
    raw_body: bytes | None = None  # InvokeModel: an HTTP 200 whose body is this
    image_error: str | None = None  # InvokeModel, image models: {"images": [], "error": this}


@dataclass
class Seen:
    operation: str
    model_id: str
    raw_path: str
    body: dict[str, Any]
    headers: dict[str, str]


class FakeBedrock:
    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self.keys: dict[str, tuple[str, str | None]] = {ACCESS_KEY_ID: (SECRET_KEY, None),
                                                        TEMP_ACCESS_KEY_ID: (TEMP_SECRET_KEY, SESSION_TOKEN)}
        self.behaviors: dict[str, Behavior] = {}
        self.media: dict[str, tuple[str, bytes]] = {}  # GET /media/<name> -> (content type, bytes)
        self.requests: list[Seen] = []
        self.spec_errors: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, model_id: str, behavior: Behavior) -> None:
        self.behaviors[model_id] = behavior

    def seen(self, model_id: str) -> list[Seen]:
        return [s for s in self.requests if s.model_id == model_id]

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            app = web.Application()
            app.router.add_get("/media/{name}", self._media)
            app.router.add_post("/{tail:.*}", self._call)
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

        self._thread = threading.Thread(target=run, name="fake-bedrock", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    # handlers ----------------------------------------------------------------------------

    async def _media(self, request: web.Request) -> web.Response:
        content_type, data = self.media[request.match_info["name"]]
        return web.Response(body=data, content_type=content_type)

    @staticmethod
    def _error(status: int, error_type: str, message: str, retry_after: str | None = None) -> web.Response:
        headers = {"x-amzn-errortype": error_type + ERROR_NAMESPACE, "x-amzn-RequestId": "req-error"}
        if retry_after:
            headers["Retry-After"] = retry_after
        return web.json_response({"message": message}, status=status, headers=headers)

    async def _call(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        parts = request.raw_path.split("?")[0].split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream", "invoke"):
            return self._error(404, "UnknownOperationException", f"no operation at {request.raw_path}")
        if parts[3] == "invoke":
            return self._invoke(request, unquote(parts[2]), raw)
        operation = "Converse" if parts[3] == "converse" else "ConverseStream"
        model_id = unquote(parts[2])
        problem = signature_problem("POST", request.raw_path, request.headers, raw, self.keys, self.region)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(Seen(operation=operation, model_id=model_id, raw_path=request.raw_path,
                                  body=body if isinstance(body, dict) else {}, headers=dict(request.headers)))
        if problem is not None:
            return self._error(403, *problem)
        if not isinstance(body, dict):
            self.spec_errors.append(f"{operation}: the body is not a JSON object")
            return self._error(400, "ValidationException", "Malformed input request")
        self.spec_errors.extend(request_errors(operation, model_id, body))
        b = self.behaviors.get(model_id, Behavior())
        # what a careless upstream might echo: the signing key's secret and session token
        secret, token = self.keys[_AUTH.fullmatch(request.headers["Authorization"]).group(1)]  # type: ignore[union-attr]
        leak = f" (secret {secret}, token {token})" if b.echo_secret_in_error else ""
        if b.status != 200:
            return self._error(b.status, b.error_type, b.error_message + leak, b.retry_after)
        if operation == "Converse":
            return self._converse(b, body)
        return await self._converse_stream(request, b, body, leak)

    def _invoke(self, request: web.Request, model_id: str, raw: bytes) -> web.Response:
        problem = signature_problem("POST", request.raw_path, request.headers, raw, self.keys, self.region)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(Seen(operation="InvokeModel", model_id=model_id, raw_path=request.raw_path,
                                  body=body if isinstance(body, dict) else {}, headers=dict(request.headers)))
        if problem is not None:
            return self._error(403, *problem)
        shape = service_model().operation_model("InvokeModel").input_shape
        self.spec_errors.extend(shape_errors(shape, {
            "modelId": model_id, "body": base64.b64encode(raw).decode(),
            "contentType": request.headers.get("Content-Type", ""), "accept": request.headers.get("Accept", "")},
            "InvokeModel request"))
        if request.headers.get("Content-Type") != "application/json":
            self.spec_errors.append("InvokeModel: Content-Type is not application/json")
        problems = invoke_problems(model_id, body)
        self.spec_errors.extend(problems)
        if problems:
            return self._error(400, "ValidationException", "; ".join(problems))
        assert isinstance(body, dict)
        b = self.behaviors.get(model_id, Behavior())
        if b.status != 200:
            return self._error(b.status, b.error_type, b.error_message, b.retry_after)
        if b.raw_body is not None:
            return web.Response(body=b.raw_body, content_type="application/json")
        headers = {"x-amzn-RequestId": "req-invoke"}
        if "titan-embed-text" in model_id:
            text = body["inputText"]
            vec = embedding_vector(text, body.get("dimensions", 1024))
            return web.json_response({"embedding": vec, "inputTextTokenCount": math.ceil(len(text.split()) * 1.3),
                                      "embeddingsByType": {"float": vec}}, headers=headers)
        if "cohere.embed" in model_id:
            return web.json_response({"embeddings": [embedding_vector(t, 1024) for t in body["texts"]],
                                      "id": "emb-fake-1", "response_type": "embeddings_floats",
                                      "texts": body["texts"]}, headers=headers)
        if b.image_error:
            return web.json_response({"images": [], "error": b.image_error}, headers=headers)
        n = body.get("imageGenerationConfig", {}).get("numberOfImages", 1)
        png = base64.b64encode(tiny_png()).decode()
        return web.json_response({"images": [png] * n, "error": None}, headers=headers)

    def _usage(self, b: Behavior, output: int) -> dict[str, int]:
        return {"inputTokens": b.input_tokens, "outputTokens": output, "cacheReadInputTokens": b.cache_read,
                "cacheWriteInputTokens": b.cache_write,
                "totalTokens": b.input_tokens + output + b.cache_read + b.cache_write}

    def _stop(self, b: Behavior, body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        reason = b.stop_reason or ("tool_use" if b.tool_calls else "end_turn")
        asked = "/stop_sequence" in (body.get("additionalModelResponseFieldPaths") or [])
        fields = {"stop_sequence": b.stop_sequence} if asked and b.stop_sequence else None
        return reason, fields

    def _converse(self, b: Behavior, body: dict[str, Any]) -> web.Response:
        content: list[dict[str, Any]] = []
        if b.redacted:
            content.append({"reasoningContent": {"redactedContent": b.redacted}})
        if b.reasoning:
            content.append({"reasoningContent": {"reasoningText": {"text": b.reasoning, "signature": b.signature}}})
        if b.text:
            content.append({"text": b.text})
        for i, (name, args) in enumerate(b.tool_calls):
            content.append({"toolUse": {"toolUseId": f"tooluse_{i}", "name": name, "input": json.loads(args)}})
        reason, fields = self._stop(b, body)
        resp: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": content}},
                                "stopReason": reason, "usage": self._usage(b, len(b.text.split())),
                                "metrics": {"latencyMs": 12}}
        if fields:
            resp["additionalModelResponseFields"] = fields
        self.spec_errors.extend(shape_errors(service_model().operation_model("Converse").output_shape, resp,
                                             "Converse response"))
        return web.json_response(resp, headers={"x-amzn-RequestId": "req-converse"})

    def _events(self, b: Behavior, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        index = 0

        def delta(d: dict[str, Any]) -> None:
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": d}))

        if b.redacted:
            delta({"reasoningContent": {"redactedContent": b.redacted}})
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if b.reasoning:
            for word in _words(b.reasoning):
                delta({"reasoningContent": {"text": word}})
            delta({"reasoningContent": {"signature": b.signature}})
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if b.text:
            for word in _words(b.text):
                delta({"text": word})
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for i, (name, args) in enumerate(b.tool_calls):
            events.append(("contentBlockStart", {"contentBlockIndex": index,
                                                 "start": {"toolUse": {"toolUseId": f"tooluse_{i}", "name": name}}}))
            for j in range(0, len(args), 4):
                delta({"toolUse": {"input": args[j:j + 4]}})
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        reason, fields = self._stop(b, body)
        events.append(("messageStop", {"stopReason": reason, **({"additionalModelResponseFields": fields}
                                                                 if fields else {})}))
        events.append(("metadata", {"usage": self._usage(b, len(b.text.split())), "metrics": {"latencyMs": 12}}))
        return events

    def _check_event(self, event_type: str, payload: dict[str, Any]) -> None:
        union = service_model().shape_for("ConverseStreamOutput")
        if event_type not in union.members:
            self.spec_errors.append(f"ConverseStream event: {event_type!r} is not an event of ConverseStreamOutput")
            return
        self.spec_errors.extend(shape_errors(union.members[event_type], payload, f"ConverseStream {event_type}"))

    async def _converse_stream(self, request: web.Request, b: Behavior, body: dict[str, Any],
                               leak: str) -> web.StreamResponse:
        frames = []
        for n, (event_type, payload) in enumerate(self._events(b, body)):
            if b.exception_after is not None and n == b.exception_after:
                message = "Too many tokens, please wait before trying again." + leak
                self._check_event(b.exception_type, {"message": message})
                frames.append(exception_frame(b.exception_type, message))
                break
            self._check_event(event_type, payload)
            frames.append(event_frame(event_type, {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEF"[:n % 20 + 4]}))
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-RequestId": "req-stream-1"})
        await resp.prepare(request)
        for n, frame in enumerate(frames):
            if b.end_after is not None and n >= b.end_after:
                break
            if b.drop_after is not None and n >= b.drop_after:
                assert request.transport is not None
                await asyncio.sleep(0.05)  # let what was written reach the peer; abort() discards buffers
                request.transport.abort()
                return resp
            if b.piece:
                for i in range(0, len(frame), b.piece):
                    await resp.write(frame[i:i + b.piece])
                    await asyncio.sleep(0.002)
            else:
                await resp.write(frame)
        if b.linger:
            await asyncio.sleep(b.linger)
        await resp.write_eof()
        return resp


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)
