// A fake OpenAI-compatible streaming server, used ONLY to test `afd-bench serve` (the load
// generator) in tests/integ/test_bench_serve.sh. Not a model: it streams `max_tokens` chunks of
// "tok " text at fixed times, so the client's measurements can be checked against the truth.
//
//   node fake_openai.mjs --port-file F [--delay-ms 20] [--ttft-ms D] [--cap 1000]
//        [--tokens-per-chunk 1] [--split] [--stall-after N] [--close-after N] [--no-usage]
//        [--reject-status 429] [--api-key K] [--max-seconds 120] [--tls-cert PEM --tls-key PEM]
//
// Listens on 127.0.0.1 with an ephemeral port, written to F once listening. Token i of a
// request is due at start + ttft + i * delay (absolute times, no drift); a chunk goes out when
// its last token is due. Past --cap streams in flight, requests get --reject-status with an
// OpenAI error object. --split writes every event in pieces, with CRLF line ends and a comment
// line, to cut SSE lines across reads. GET /stats answers the counters as JSON. With
// --tls-cert/--tls-key it speaks HTTPS.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';

const opt = { delayMs: 20, ttftMs: -1, cap: 1000, tokensPerChunk: 1, split: false, stallAfter: -1,
              closeAfter: -1, usage: true, rejectStatus: 429, apiKey: '', maxSeconds: 120,
              portFile: '', tlsCert: '', tlsKey: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    const num = () => { i++; const n = Number(v); if (!Number.isFinite(n)) die(a); return n; };
    switch (a) {
    case '--port-file': opt.portFile = v; i++; break;
    case '--delay-ms': opt.delayMs = num(); break;
    case '--ttft-ms': opt.ttftMs = num(); break;
    case '--cap': opt.cap = num(); break;
    case '--tokens-per-chunk': opt.tokensPerChunk = num(); break;
    case '--split': opt.split = true; break;
    case '--stall-after': opt.stallAfter = num(); break;
    case '--close-after': opt.closeAfter = num(); break;
    case '--no-usage': opt.usage = false; break;
    case '--reject-status': opt.rejectStatus = num(); break;
    case '--api-key': opt.apiKey = v; i++; break;
    case '--max-seconds': opt.maxSeconds = num(); break;
    case '--tls-cert': opt.tlsCert = v; i++; break;
    case '--tls-key': opt.tlsKey = v; i++; break;
    default: die(a);
    }
}
function die(a) { console.error(`fake_openai: bad argument ${a}`); process.exit(2); }
if (!opt.portFile) die('--port-file missing');
if (opt.ttftMs < 0) opt.ttftMs = opt.delayMs;

const stats = { requests: 0, rejected: 0, completed: 0, bad: 0, aborted: 0, inFlight: 0,
                maxInFlight: 0, promptTokens: 0, outputTokens: 0, lastError: '' };

function errorReply(res, status, message, type) {
    const body = JSON.stringify({ error: { message, type, param: null, code: null } });
    const h = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (status === 429 || status === 503) h['Retry-After'] = '1';
    res.writeHead(status, h);
    res.end(body);
}

// Checks the request the load generator sent; returns [promptTokens, maxTokens] or a message.
function checkBody(url, b) {
    if (!b || typeof b !== 'object') return 'body is not a JSON object';
    if (typeof b.model !== 'string' || !b.model) return 'model missing';
    if (b.stream !== true) return 'stream is not true';
    if (b.ignore_eos !== true) return 'ignore_eos is not true';
    if (!b.stream_options || b.stream_options.include_usage !== true) return 'include_usage missing';
    if (b.temperature !== 0) return 'temperature is not 0';
    if (!Number.isInteger(b.max_tokens) || b.max_tokens < 1) return 'max_tokens is not a count';
    if (url === '/v1/completions') {
        if (!Array.isArray(b.prompt) || !b.prompt.length ||
            !b.prompt.every((t) => Number.isInteger(t) && t >= 0)) return 'prompt is not token ids';
        return [b.prompt.length, b.max_tokens];
    }
    const m = b.messages;
    if (!Array.isArray(m) || m.length !== 1 || m[0].role !== 'user' ||
        typeof m[0].content !== 'string' || !m[0].content) return 'messages is not one user message';
    return [m[0].content.split(' ').length, b.max_tokens];
}

function chunkJson(chat, id, text, finish, usage) {
    const choice = chat ? { index: 0, delta: text === null ? {} : { content: text }, finish_reason: finish }
                        : { index: 0, text: text ?? '', logprobs: null, finish_reason: finish };
    const o = { id, object: chat ? 'chat.completion.chunk' : 'text_completion',
                created: Math.floor(Date.now() / 1000), model: 'fake',
                choices: usage ? [] : [choice] };
    if (usage) o.usage = usage;
    return o;
}

function writeEvent(res, obj) {
    const data = typeof obj === 'string' ? obj : JSON.stringify(obj);
    if (!opt.split) { res.write(`data: ${data}\n\n`); return; }
    const s = `: keep-alive\r\ndata: ${data}\r\n\r\n`;
    const a = 1 + Math.floor(Math.random() * (s.length - 2)), b = a + Math.floor((s.length - a) / 2);
    res.write(s.slice(0, a));
    res.write(s.slice(a, b));
    res.write(s.slice(b));
}

function stream(req, res, chat, promptTokens, maxTokens) {
    const id = `cmpl-${stats.requests}`, t0 = Date.now();
    let sent = 0, done = false, timer = null;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    const finish = (aborted) => {
        if (done) return;
        done = true;
        stats.inFlight--;
        if (aborted) stats.aborted++;
        clearTimeout(timer);
    };
    res.on('close', () => finish(!res.writableFinished));
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    if (chat) writeEvent(res, chunkJson(true, id, null, null, null)); // role chunk, no content
    const step = () => {
        if (done) return;
        if (opt.closeAfter >= 0 && sent >= opt.closeAfter) { req.socket.destroy(); return; }
        if (opt.stallAfter >= 0 && sent >= opt.stallAfter) return; // keep the socket, send nothing
        const k = Math.min(opt.tokensPerChunk, maxTokens - sent);
        sent += k;
        const last = sent === maxTokens;
        writeEvent(res, chunkJson(chat, id, 'tok '.repeat(k), last ? 'length' : null, null));
        if (!last) {
            const due = t0 + opt.ttftMs + (sent + Math.min(opt.tokensPerChunk, maxTokens - sent) - 1) * opt.delayMs;
            timer = setTimeout(step, Math.max(0, due - Date.now()));
            return;
        }
        if (opt.usage)
            writeEvent(res, chunkJson(chat, id, null, null, { prompt_tokens: promptTokens,
                       completion_tokens: maxTokens, total_tokens: promptTokens + maxTokens }));
        writeEvent(res, '[DONE]');
        stats.completed++;
        stats.outputTokens += maxTokens;
        finish(false);
        res.end();
    };
    const due = t0 + opt.ttftMs + (Math.min(opt.tokensPerChunk, maxTokens) - 1) * opt.delayMs;
    timer = setTimeout(step, Math.max(0, due - Date.now()));
}

function handle(req, res, raw) {
    if (req.method === 'GET' && req.url === '/stats') {
        const body = JSON.stringify(stats);
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(body);
        return;
    }
    const chat = req.url === '/v1/chat/completions';
    if (req.method !== 'POST' || (!chat && req.url !== '/v1/completions'))
        return errorReply(res, 404, `no route ${req.method} ${req.url}`, 'invalid_request_error');
    stats.requests++;
    if (opt.apiKey && req.headers.authorization !== `Bearer ${opt.apiKey}`) {
        stats.bad++;
        return errorReply(res, 401, 'bad API key', 'invalid_request_error');
    }
    let b = null;
    try { b = JSON.parse(raw); } catch { /* checked below */ }
    const c = checkBody(req.url, b);
    if (typeof c === 'string') {
        stats.bad++;
        stats.lastError = c;
        return errorReply(res, 400, c, 'invalid_request_error');
    }
    if (stats.inFlight >= opt.cap) {
        stats.rejected++;
        return errorReply(res, opt.rejectStatus, 'over capacity', 'rate_limit_exceeded');
    }
    stats.promptTokens += c[0];
    stream(req, res, chat, c[0], c[1]);
}

const onRequest = (req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => handle(req, res, Buffer.concat(parts).toString('utf8')));
};
const server = opt.tlsCert
    ? https.createServer({ cert: fs.readFileSync(opt.tlsCert), key: fs.readFileSync(opt.tlsKey) },
                         onRequest)
    : http.createServer(onRequest);
server.listen(0, '127.0.0.1', () => {
    const tmp = `${opt.portFile}.tmp`;
    fs.writeFileSync(tmp, `${server.address().port}\n`);
    fs.renameSync(tmp, opt.portFile);
});
setTimeout(() => process.exit(0), opt.maxSeconds * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
