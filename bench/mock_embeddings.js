#!/usr/bin/env node
// Mock OpenAI embeddings upstream for bench/embeddings_litellm.sh. Node `http` only, no npm deps.
//
//   MOCK_PORT=18081 node bench/mock_embeddings.js
//
// Why not the shared kit's mock: it serves /v1/embeddings, but with 8 dimensions unless the request
// asks for more, while text-embedding-3-small answers 1536 by default; the size of the answer is
// most of what a gateway does with an embeddings request, so this mock answers 1536 by default.
//
//   POST /v1/embeddings (also /embeddings)  CreateEmbeddingResponse for any model: input a string,
//        [string], [int] or [[int]]; "dimensions" (default MOCK_DIMS, 1536); encoding_format
//        float (numbers rounded to 8 significant digits, about what OpenAI sends) or base64
//        (little-endian float32); unit vectors from a SHA-256 chain of each input (cached);
//        usage.prompt_tokens (about 4 characters a token)
//   GET  /health, GET /v1/models; anything else 404 in OpenAI's error shape.
//
//   MOCK_HOST=127.0.0.1 MOCK_PORT=18081 MOCK_DIMS=1536 MOCK_QUIET=1
'use strict';
const http = require('http');
const crypto = require('crypto');

const HOST = process.env.MOCK_HOST || '127.0.0.1';
const PORT = parseInt(process.env.MOCK_PORT || '18081', 10);
const DIMS = parseInt(process.env.MOCK_DIMS || '1536', 10);

function sendJson(res, status, obj) {
  const b = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length,
    'x-request-id': 'req_' + crypto.randomBytes(8).toString('hex') });
  res.end(b);
}
function sendError(res, status, message, param, type) {
  sendJson(res, status, { error: { message, type: type || 'invalid_request_error', param: param || null, code: null } });
}

const cache = new Map();  // key + dims -> {floats: [numbers], b64: string}
function vectorOf(key, dims) {
  const ck = dims + '\u0000' + key;
  let hit = cache.get(ck);
  if (hit) return hit;
  const v = new Float64Array(dims);
  let norm = 0, digest = null, off = 0, block = 0;
  for (let i = 0; i < dims; i++) {
    if (digest === null || off + 4 > digest.length) {
      digest = crypto.createHash('sha256').update(key).update('\u0000' + block++).digest(); off = 0;
    }
    v[i] = digest.readUInt32LE(off) / 0xffffffff * 2 - 1; off += 4;
    norm += v[i] * v[i];
  }
  norm = Math.sqrt(norm) || 1;
  const f32 = new Float32Array(dims);
  for (let i = 0; i < dims; i++) f32[i] = v[i] / norm;
  const buf = Buffer.alloc(dims * 4);
  for (let i = 0; i < dims; i++) buf.writeFloatLE(f32[i], i * 4);
  hit = { floats: Array.from(f32, x => Number(x.toPrecision(8))), b64: buf.toString('base64') };
  if (cache.size > 4096) cache.clear();
  cache.set(ck, hit);
  return hit;
}

function embeddings(res, body) {
  const input = body.input;
  if (input === undefined || input === null) return sendError(res, 400, "You must provide an 'input' parameter.", 'input');
  let items = null;  // [{key, tokens}]
  const tok = s => Math.max(1, Math.ceil(s.length / 4));
  if (typeof input === 'string' && input !== '') items = [{ key: input, tokens: tok(input) }];
  else if (Array.isArray(input) && input.length > 0 && input.length <= 2048) {
    if (input.every(x => typeof x === 'string' && x !== '')) items = input.map(s => ({ key: s, tokens: tok(s) }));
    else if (input.every(Number.isInteger)) items = [{ key: 'tokens:' + input.join(','), tokens: input.length }];
    else if (input.every(a => Array.isArray(a) && a.length > 0 && a.every(Number.isInteger))) {
      items = input.map(a => ({ key: 'tokens:' + a.join(','), tokens: a.length }));
    }
  }
  if (!items) return sendError(res, 400, "'input' must be a non-empty string, array of strings, array of integers or array of integer arrays.", 'input');
  const dims = body.dimensions === undefined || body.dimensions === null ? DIMS : body.dimensions;
  if (!Number.isInteger(dims) || dims < 1 || dims > 4096) return sendError(res, 400, "'dimensions' must be an integer from 1 to 4096.", 'dimensions');
  const format = body.encoding_format === undefined || body.encoding_format === null ? 'float' : body.encoding_format;
  if (format !== 'float' && format !== 'base64') return sendError(res, 400, "'encoding_format' must be 'float' or 'base64'.", 'encoding_format');
  let tokens = 0;
  const data = items.map((it, index) => {
    tokens += it.tokens;
    const v = vectorOf(it.key, dims);
    return { object: 'embedding', index, embedding: format === 'base64' ? v.b64 : v.floats };
  });
  sendJson(res, 200, { object: 'list', data, model: typeof body.model === 'string' ? body.model : 'text-embedding-3-small',
    usage: { prompt_tokens: tokens, total_tokens: tokens } });
}

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'GET' && path === '/health') return sendJson(res, 200, { status: 'ok' });
    if (req.method === 'GET' && (path === '/v1/models' || path === '/models')) {
      return sendJson(res, 200, { object: 'list', data: [{ id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' }] });
    }
    if (req.method === 'POST' && (path === '/v1/embeddings' || path === '/embeddings')) {
      let body;
      try { body = JSON.parse(Buffer.concat(chunks)); } catch (e) { body = null; }
      if (!body || typeof body !== 'object' || Array.isArray(body)) return sendError(res, 400, 'The body is not a JSON object.');
      return embeddings(res, body);
    }
    sendError(res, 404, `Unknown request URL: ${req.method} ${path}.`, null, 'invalid_request_error');
  });
});
server.keepAliveTimeout = 65000;
server.listen(PORT, HOST, () => {
  if (process.env.MOCK_QUIET !== '1') console.log(`mock_embeddings listening on http://${HOST}:${PORT} (${DIMS} dims)`);
});
