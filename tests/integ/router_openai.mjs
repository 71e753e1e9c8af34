// router_openai.mjs: afd-router through the official OpenAI Node client (deploy/npm, v6).
// Used by tests/integ/test_router_api.sh; not a tool of its own.
//
//   node router_openai.mjs --url http://127.0.0.1:P [--both-url URL --both-key K]
//                          [--model tiny] [--openai DIR]
//
// --url: a router in front of a prefill + decode pair (no API keys, default SLA).
// --both-url / --both-key: a router in front of one attnd of role both, with the keys file
// (K is a valid key) and an SLA that admits one sequence at a time (queue 0, 1 ms target):
// the 401 / 429 cases and greedy determinism across the two layouts run there.
// --openai: the openai package directory (default: deploy/npm/node_modules/openai).
//
// Prints "ok: ..." per check and "FAIL: ..." with both values for each failed one; exits 0
// when every check passed, 1 otherwise (and after 100 s at most, as a failure).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const opt = { url: '', bothUrl: '', bothKey: '', model: 'tiny',
              openai: path.join(here, '../../deploy/npm/node_modules/openai') };
for (let i = 2; i < process.argv.length; i += 2) {
    const k = process.argv[i], v = process.argv[i + 1];
    if (v === undefined) bad(`${k} needs a value`);
    if (k === '--url') opt.url = v;
    else if (k === '--both-url') opt.bothUrl = v;
    else if (k === '--both-key') opt.bothKey = v;
    else if (k === '--model') opt.model = v;
    else if (k === '--openai') opt.openai = v;
    else bad(`unknown argument ${k}`);
}
if (!opt.url) bad('--url is required');
function bad(msg) { console.error(`router_openai: ${msg}`); process.exit(2); }

const deadline = setTimeout(() => { console.log('FAIL: router_openai did not finish within 100 s'); process.exit(1); }, 100000);
const { default: OpenAI } = await import(pathToFileURL(path.join(opt.openai, 'index.mjs')).href);
const M = opt.model;
const client = new OpenAI({ baseURL: `${opt.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });

let nfail = 0, nok = 0;
const show = (v) => { const s = JSON.stringify(v); return s === undefined ? String(v) : s.length > 300 ? s.slice(0, 300) + '...' : s; };
function check(cond, what, got, want) {
    if (cond) { nok++; return true; }
    nfail++;
    console.log(`FAIL: ${what}: got ${show(got)}, want ${show(want)}`);
    return false;
}
const eq = (got, want, what) => check(got === want, what, got, want);
const deq = (got, want, what) => check(JSON.stringify(got) === JSON.stringify(want), what, got, want);
const t0 = Date.now();
function ok(msg) { console.log(`ok: ${msg} [${Date.now() - t0} ms]`); }

async function section(name, fn) {
    const before = nfail;
    try {
        await fn();
    } catch (e) {
        nfail++;
        console.log(`FAIL: ${name}: unexpected ${e?.constructor?.name}: ${e?.message}`);
    }
    if (nfail === before) ok(name);
}

// The router's /tokenize, with plain fetch (not part of the OpenAI API).
async function tokenize(body, url = opt.url, key = '') {
    const r = await fetch(`${url}/tokenize`, { method: 'POST', body: JSON.stringify(body),
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) } });
    if (r.status !== 200) throw new Error(`/tokenize answered ${r.status}: ${await r.text()}`);
    return (await r.json()).count;
}

// Expects the call to throw an APIError of this status; returns it.
async function expectError(p, status, what) {
    try {
        await p;
    } catch (e) {
        if (!(e instanceof OpenAI.APIError)) { check(false, `${what}: error class`, e?.constructor?.name, 'APIError'); return null; }
        eq(e.status, status, `${what}: status`);
        return e;
    }
    check(false, `${what}: no error`, 'success', `HTTP ${status}`);
    return null;
}

// Collects a stream: chunks, text per choice index, finish per index, usage chunk.
async function collect(stream) {
    const r = { chunks: [], text: {}, finish: {}, roles: {}, lp: {}, usage: undefined, finishes: 0 };
    for await (const c of stream) {
        r.chunks.push(c);
        if (c.choices.length === 0) { r.usage = c.usage; continue; }
        for (const ch of c.choices) {
            const i = ch.index;
            r.text[i] ??= '';
            r.lp[i] ??= [];
            if (ch.delta) {
                if (ch.delta.role) r.roles[i] = (r.roles[i] ?? 0) + 1;
                if (ch.delta.content) r.text[i] += ch.delta.content;
                if (ch.logprobs?.content) r.lp[i].push(...ch.logprobs.content);
            } else {
                r.text[i] += ch.text ?? '';
                if (ch.logprobs?.tokens) r.lp[i].push(...ch.logprobs.tokens);
            }
            if (ch.finish_reason) { r.finish[i] = ch.finish_reason; r.finishes++; }
        }
    }
    return r;
}

const msgs = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Tell me a long story about a lighthouse.' }];
const prompt = 'The lighthouse keeper wrote in his log that';

// ---- models ------------------------------------------------------------------------------
await section('models: list, retrieve, unknown model 404', async () => {
    const list = await client.models.list();
    const ids = [];
    for await (const m of list) ids.push(m.id);
    deq(ids, [M], 'models.list ids');
    const one = await client.models.retrieve(M);
    eq(one.id, M, 'models.retrieve id');
    eq(one.object, 'model', 'models.retrieve object');
    const e = await expectError(client.models.retrieve('no-such-model'), 404, 'models.retrieve unknown');
    if (e) eq(e.code, 'model_not_found', 'unknown model code');
});

// ---- chat and completions, plain ------------------------------------------------------------
let chatGreedy = '', chatPromptTokens = 0, fpOf = '';
await section('chat: non-streaming, finish length, usage vs /tokenize', async () => {
    const r = await client.chat.completions.create({ model: M, messages: msgs, max_tokens: 12, temperature: 0 });
    eq(r.object, 'chat.completion', 'object');
    check(/^chatcmpl-[A-Za-z0-9]{29}$/.test(r.id), 'id shape', r.id, 'chatcmpl- + 29 alphanumerics');
    eq(r.model, M, 'model');
    check(/^fp_[0-9a-f]{10}$/.test(r.system_fingerprint), 'system_fingerprint', r.system_fingerprint, 'fp_ + 10 hex digits');
    eq(r.choices.length, 1, 'choices');
    eq(r.choices[0].index, 0, 'index');
    eq(r.choices[0].message.role, 'assistant', 'role');
    eq(r.choices[0].finish_reason, 'length', 'finish_reason');
    check(r.choices[0].message.content.length > 0, 'content non-empty', r.choices[0].message.content, 'text');
    eq(r.usage.completion_tokens, 12, 'completion_tokens');
    chatPromptTokens = await tokenize({ model: M, messages: msgs });
    eq(r.usage.prompt_tokens, chatPromptTokens, 'prompt_tokens vs /tokenize messages');
    eq(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens, 'total_tokens');
    chatGreedy = r.choices[0].message.content;
    fpOf = r.system_fingerprint;
    const again = await client.chat.completions.create({ model: M, messages: msgs, max_tokens: 12, temperature: 0 });
    eq(again.choices[0].message.content, chatGreedy, 'greedy twice: same text');
});

await section('chat: streaming without include_usage (no usage field anywhere)', async () => {
    const s = await client.chat.completions.create({ model: M, messages: msgs, max_tokens: 12, temperature: 0, stream: true });
    const r = await collect(s);
    eq(r.text[0], chatGreedy, 'streamed text vs non-streamed');
    eq(r.finish[0], 'length', 'finish_reason');
    eq(r.roles[0], 1, 'role chunks');
    eq(r.finishes, 1, 'chunks with a finish_reason');
    const withUsage = r.chunks.filter((c) => 'usage' in c).length;
    eq(withUsage, 0, 'chunks with a usage field');
    const ids = new Set(r.chunks.map((c) => c.id));
    eq(ids.size, 1, 'one id for every chunk');
    deq([...new Set(r.chunks.map((c) => c.system_fingerprint))], [fpOf], 'system_fingerprint of every chunk');
    eq(r.chunks[0].object, 'chat.completion.chunk', 'chunk object');
});

await section('chat: streaming with include_usage and logprobs (usage == tokens streamed)', async () => {
    const s = await client.chat.completions.create({ model: M, messages: msgs, max_tokens: 12, temperature: 0, stream: true,
        stream_options: { include_usage: true }, logprobs: true });
    const r = await collect(s);
    const last = r.chunks[r.chunks.length - 1];
    eq(last.choices.length, 0, 'last chunk has no choices');
    check(last.usage && typeof last.usage === 'object', 'last chunk usage', last.usage, 'an object');
    const nullUsage = r.chunks.slice(0, -1).filter((c) => c.usage === null).length;
    eq(nullUsage, r.chunks.length - 1, 'chunks before the last with "usage": null');
    eq(r.text[0], chatGreedy, 'streamed text');
    eq(r.usage.completion_tokens, r.lp[0].length, 'completion_tokens vs tokens streamed (logprobs entries)');
    eq(r.usage.completion_tokens, 12, 'completion_tokens');
    eq(r.usage.prompt_tokens, chatPromptTokens, 'prompt_tokens vs /tokenize');
    eq(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens, 'total_tokens');
});

let cmplGreedy = '';
await section('completions: non-streaming and streaming, include_usage on/off, usage vs /tokenize', async () => {
    const r = await client.completions.create({ model: M, prompt, max_tokens: 10, temperature: 0 });
    eq(r.object, 'text_completion', 'object');
    check(/^cmpl-[A-Za-z0-9]{29}$/.test(r.id), 'id shape', r.id, 'cmpl- + 29 alphanumerics');
    eq(r.choices[0].finish_reason, 'length', 'finish_reason');
    eq(r.usage.completion_tokens, 10, 'completion_tokens');
    const pt = await tokenize({ model: M, prompt });
    eq(r.usage.prompt_tokens, pt, 'prompt_tokens vs /tokenize prompt');
    cmplGreedy = r.choices[0].text;
    const s1 = await collect(await client.completions.create({ model: M, prompt, max_tokens: 10, temperature: 0, stream: true }));
    eq(s1.text[0], cmplGreedy, 'streamed text');
    eq(s1.finish[0], 'length', 'streamed finish_reason');
    eq(s1.chunks.filter((c) => 'usage' in c).length, 0, 'chunks with a usage field (not asked)');
    const s2 = await collect(await client.completions.create({ model: M, prompt, max_tokens: 10, temperature: 0, stream: true,
        stream_options: { include_usage: true }, logprobs: 0 }));
    eq(s2.text[0], cmplGreedy, 'streamed text with usage');
    eq(s2.chunks.slice(0, -1).filter((c) => c.usage === null).length, s2.chunks.length - 1, 'usage null before the last');
    eq(s2.chunks[s2.chunks.length - 1].choices.length, 0, 'usage chunk has no choices');
    eq(s2.usage?.completion_tokens, s2.lp[0].length, 'completion_tokens vs tokens streamed');
    eq(s2.usage?.prompt_tokens, pt, 'streamed prompt_tokens');
});

// ---- stop strings across token boundaries ----------------------------------------------------
// Token bytes from logprobs: chat gives `bytes`; completions gives the token text, or
// "bytes:\xNN..." for a token that is not valid UTF-8 alone.
function cmplTokenBytes(t) {
    if (!t.startsWith('bytes:')) return Buffer.from(t, 'utf8');
    const hex = [...t.slice(6).matchAll(/\\x([0-9a-fA-F]{2})/g)].map((m) => parseInt(m[1], 16));
    return Buffer.from(hex);
}
function firstCharLen(b) { // a valid UTF-8 buffer of >= 2 characters: bytes of its first one
    const s = b.toString('utf8');
    if (Buffer.from(s, 'utf8').compare(b) !== 0 || [...s].length < 2) return 0;
    return Buffer.from([...s][0], 'utf8').length;
}
// A stop string that starts inside token i (after its first character) and ends inside a
// later token j (after j's first character), whose first occurrence in the text is there.
function pickStop(full, toks) {
    const fb = Buffer.from(full, 'utf8');
    const off = [0];
    for (const t of toks) off.push(off[off.length - 1] + t.length);
    for (let gap = 1; gap <= 3; gap++) {
        const order = [...toks.keys()].filter((i) => i >= 2).concat([0, 1]); // some text before it, if possible
        for (const i of order) {
            if (i + gap >= toks.length) continue;
            const j = i + gap, a = firstCharLen(toks[i]), b = firstCharLen(toks[j]);
            if (!a || !b || off[j] + b > fb.length) continue;
            const start = off[i] + a, end = off[j] + b;
            if (Buffer.compare(fb.subarray(0, end), Buffer.concat(toks.slice(0, j + 1)).subarray(0, end)) !== 0) continue;
            const stop = fb.subarray(start, end).toString('utf8');
            const before = fb.subarray(0, start).toString('utf8');
            if (full.indexOf(stop) === before.length) return { stop, before, i, j };
        }
    }
    return null;
}

async function stopTest(kind) {
    const chat = kind === 'chat';
    const base = chat ? { model: M, messages: msgs, max_tokens: 24, temperature: 0 }
                      : { model: M, prompt, max_tokens: 24, temperature: 0 };
    const api = chat ? client.chat.completions : client.completions;
    const textOf = (r) => chat ? r.choices[0].message.content : r.choices[0].text;
    const r = await api.create({ ...base, ...(chat ? { logprobs: true } : { logprobs: 0 }) });
    const full = textOf(r);
    const toks = chat ? r.choices[0].logprobs.content.map((c) => Buffer.from(c.bytes ?? []))
                      : r.choices[0].logprobs.tokens.map(cmplTokenBytes);
    eq(toks.length, 24, `${kind}: logprob entries`);
    const p = pickStop(full, toks);
    if (!check(p !== null, `${kind}: a stop string spanning tokens in the greedy text`, full, 'two tokens of >= 2 characters')) return;
    console.log(`  ${kind}: stop ${show(p.stop)} from inside token ${p.i} to inside token ${p.j} of ${show(full)}`);
    const r2 = await api.create({ ...base, stop: [p.stop] });
    eq(textOf(r2), p.before, `${kind}: text with stop ${show(p.stop)} (tokens ${p.i}..${p.j})`);
    eq(r2.choices[0].finish_reason, 'stop', `${kind}: finish_reason with the stop`);
    check(r2.usage.completion_tokens <= 24, `${kind}: completion_tokens with the stop`, r2.usage.completion_tokens, '<= 24');
    const s = await collect(await api.create({ ...base, stop: ['\u0007never', p.stop], stream: true }));
    eq(s.text[0], p.before, `${kind}: streamed text with the stop`);
    eq(s.finish[0], 'stop', `${kind}: streamed finish_reason`);
    const r3 = await api.create({ ...base, stop: '\u0007no such text' });
    eq(textOf(r3), full, `${kind}: a stop that never occurs changes nothing`);
    eq(r3.choices[0].finish_reason, 'length', `${kind}: finish_reason with a stop that never occurs`);
}
await section('stop strings split across tokens (chat)', () => stopTest('chat'));
await section('stop strings split across tokens (completions)', () => stopTest('completions'));

// ---- n, prompt lists, logprobs, seeds ------------------------------------------------------------
await section('n > 1: indices, finishes, usage; streamed == non-streamed with a seed', async () => {
    const base = { model: M, messages: msgs, max_tokens: 6, temperature: 1, seed: 4242, n: 3 };
    const r = await client.chat.completions.create(base);
    deq(r.choices.map((c) => c.index), [0, 1, 2], 'choice indices');
    deq(r.choices.map((c) => c.finish_reason), ['length', 'length', 'length'], 'finish per choice');
    eq(r.usage.completion_tokens, 18, 'completion_tokens over 3 choices');
    eq(r.usage.prompt_tokens, chatPromptTokens, 'prompt_tokens counted once (one prompt)');
    const s = await collect(await client.chat.completions.create({ ...base, stream: true }));
    deq(Object.keys(s.finish).sort(), ['0', '1', '2'], 'streamed indices with a finish');
    eq(s.finishes, 3, 'finish chunks');
    deq([0, 1, 2].map((i) => s.roles[i]), [1, 1, 1], 'one role chunk per index');
    deq([0, 1, 2].map((i) => s.text[i]), r.choices.map((c) => c.message.content), 'streamed texts vs non-streamed (same seed)');
});

await section('completions: prompt list x n in prompt-major order', async () => {
    const prompts = ['Once upon a time', 'The weather today'];
    const single = [];
    for (const p of prompts) single.push((await client.completions.create({ model: M, prompt: p, max_tokens: 5, temperature: 0 })).choices[0].text);
    check(single[0] !== single[1], 'the two prompts give different texts (else the order is not tested)', single, 'different');
    const r = await client.completions.create({ model: M, prompt: prompts, max_tokens: 5, temperature: 0, n: 2 });
    deq(r.choices.map((c) => c.index), [0, 1, 2, 3], 'indices');
    deq(r.choices.map((c) => c.text), [single[0], single[0], single[1], single[1]], 'choice p*n+j is prompt p');
    const pt = (await tokenize({ model: M, prompt: prompts[0] })) + (await tokenize({ model: M, prompt: prompts[1] }));
    eq(r.usage.prompt_tokens, pt, 'prompt_tokens = sum over the prompts');
    eq(r.usage.completion_tokens, 20, 'completion_tokens = 4 choices x 5');
});

await section('logprobs shapes (chat content[], completions tokens/token_logprobs/top_logprobs/text_offset)', async () => {
    const k = 3;
    const r = await client.chat.completions.create({ model: M, messages: msgs, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: k });
    const c = r.choices[0].logprobs.content;
    eq(c.length, 8, 'chat: one entry per token');
    let bytes = [];
    for (const [n, e] of c.entries()) {
        eq(typeof e.token, 'string', `chat: content[${n}].token type`);
        check(typeof e.logprob === 'number' && e.logprob <= 0, `chat: content[${n}].logprob`, e.logprob, 'a number <= 0');
        check(Array.isArray(e.bytes), `chat: content[${n}].bytes`, e.bytes, 'an array');
        eq(e.top_logprobs.length, k, `chat: content[${n}].top_logprobs length`);
        const lps = e.top_logprobs.map((t) => t.logprob);
        deq(lps, [...lps].sort((a, b) => b - a), `chat: content[${n}].top_logprobs sorted`);
        check(e.top_logprobs.every((t) => typeof t.token === 'string' && Array.isArray(t.bytes)), `chat: content[${n}].top_logprobs entries`, e.top_logprobs, '{token, logprob, bytes}');
        check(e.logprob <= lps[0] + 1e-6, `chat: content[${n}] greedy logprob <= the best`, e.logprob, lps[0]);
        bytes = bytes.concat(e.bytes ?? []);
    }
    eq(Buffer.from(bytes).toString('utf8'), r.choices[0].message.content, 'chat: bytes concatenate to the content');
    eq(r.choices[0].logprobs.refusal, null, 'chat: logprobs.refusal');
    const q = await client.completions.create({ model: M, prompt, max_tokens: 8, temperature: 0, logprobs: 2 });
    const l = q.choices[0].logprobs;
    eq(l.tokens.length, 8, 'completions: tokens');
    eq(l.token_logprobs.length, 8, 'completions: token_logprobs');
    eq(l.top_logprobs.length, 8, 'completions: top_logprobs');
    eq(l.text_offset.length, 8, 'completions: text_offset');
    eq(l.text_offset[0], 0, 'completions: text_offset[0]');
    check(l.text_offset.every((v, i) => i === 0 || v >= l.text_offset[i - 1]), 'completions: text_offset non-decreasing', l.text_offset, 'sorted');
    check(l.top_logprobs.every((o) => Object.keys(o).length >= 1 && Object.keys(o).length <= 2), 'completions: top_logprobs objects of <= 2', l.top_logprobs, '1..2 keys');
    check(l.token_logprobs.every((v) => typeof v === 'number' && v <= 0), 'completions: token_logprobs numbers <= 0', l.token_logprobs, '<= 0');
    const e = await expectError(client.chat.completions.create({ model: M, messages: msgs, max_tokens: 2, top_logprobs: 2 }), 400, 'top_logprobs without logprobs');
    if (e) eq(e.param, 'top_logprobs', 'top_logprobs without logprobs: param');
});

await section('seed: same seed twice same text, two seeds differ (temperature 1)', async () => {
    const base = { model: M, prompt, max_tokens: 16, temperature: 1 };
    const t = async (seed) => (await client.completions.create({ ...base, seed })).choices[0].text;
    const a = await t(1234), b = await t(1234), c = await t(98765);
    eq(b, a, 'same seed');
    check(c !== a, 'different seeds give different texts', [a, c], 'different');
    check(a !== cmplGreedy || c !== cmplGreedy, 'temperature 1 is not greedy', [a, c, cmplGreedy], 'some difference');
});

await section('errors: 400 with OpenAI error objects (type, param, code)', async () => {
    let e = await expectError(client.chat.completions.create({ model: M, messages: msgs, temperature: 3 }), 400, 'temperature 3');
    if (e) { eq(e.param, 'temperature', 'param'); eq(e.code, 'decimal_above_max_value', 'code'); eq(e.type, 'invalid_request_error', 'type'); }
    e = await expectError(client.chat.completions.create({ model: M, messages: 'hello' }), 400, 'messages as a string');
    if (e) { eq(e.param, 'messages', 'param'); eq(e.code, 'invalid_type', 'code'); }
    e = await expectError(client.completions.create({ model: M, prompt, n: 99 }), 400, 'n 99');
    if (e) { eq(e.param, 'n', 'param'); eq(e.code, 'integer_above_max_value', 'code'); }
    e = await expectError(client.chat.completions.create({ model: M, messages: msgs, max_tokens: 1e6 }), 400, 'context exceeded');
    if (e) { eq(e.code, 'context_length_exceeded', 'code'); eq(e.param, 'max_tokens', 'param'); }
    e = await expectError(client.chat.completions.create({ model: 'gpt-nope', messages: msgs }), 404, 'unknown model');
    if (e) { eq(e.code, 'model_not_found', 'code'); eq(e.param, 'model', 'param'); }
});

// ---- the other layout: keys, SLA rejection, greedy determinism ---------------------------------
if (opt.bothUrl) {
    const both = new OpenAI({ baseURL: `${opt.bothUrl}/v1`, apiKey: opt.bothKey, maxRetries: 0, timeout: 30000 });
    await section('layout both: the same greedy text as prefill+decode', async () => {
        const r = await both.chat.completions.create({ model: M, messages: msgs, max_tokens: 12, temperature: 0 });
        eq(r.choices[0].message.content, chatGreedy, 'chat greedy text, both vs pd');
        const q = await both.completions.create({ model: M, prompt, max_tokens: 10, temperature: 0 });
        eq(q.choices[0].text, cmplGreedy, 'completions greedy text, both vs pd');
        const a = (await both.completions.create({ model: M, prompt, max_tokens: 8, temperature: 1, seed: 77 })).choices[0].text;
        const b = (await client.completions.create({ model: M, prompt, max_tokens: 8, temperature: 1, seed: 77 })).choices[0].text;
        eq(a, b, 'seeded sample, both vs pd');
    });
    await section('401: wrong key, no key; the right key works', async () => {
        const wrong = new OpenAI({ baseURL: `${opt.bothUrl}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
        let e = await expectError(wrong.models.list(), 401, 'wrong key');
        if (e) { eq(e.code, 'invalid_api_key', 'code'); eq(e.type, 'invalid_request_error', 'type'); }
        const none = new OpenAI({ baseURL: `${opt.bothUrl}/v1`, apiKey: 'unused', maxRetries: 0,
                                  defaultHeaders: { authorization: null } }); // no Authorization header
        e = await expectError(none.chat.completions.create({ model: M, messages: msgs, max_tokens: 1 }), 401, 'no key');
        const list = await both.models.list();
        eq(list.data.length, 1, 'models with the right key');
    });
    await section('429 with Retry-After while the only instance is busy (SLA queue 0)', async () => {
        const s = await both.chat.completions.create({ model: M, messages: msgs, max_tokens: 400, temperature: 0, stream: true, ignore_eos: true });
        const it = s[Symbol.asyncIterator]();
        await it.next(); // the stream started: the instance holds our sequence
        const e = await expectError(both.chat.completions.create({ model: M, messages: msgs, max_tokens: 4 }), 429, 'second request');
        if (e) {
            eq(e.code, 'rate_limit_exceeded', '429 code');
            const ra = Number(e.headers?.get ? e.headers.get('retry-after') : e.headers?.['retry-after']);
            check(Number.isInteger(ra) && ra >= 1 && ra <= 60, 'Retry-After', ra, '1..60');
        }
        s.controller.abort();
        await it.return?.();
        // the instance is free again soon: a request is admitted (retry for up to 3 s)
        let done = false;
        for (let i = 0; i < 30 && !done; i++) {
            try {
                await both.chat.completions.create({ model: M, messages: msgs, max_tokens: 2 });
                done = true;
            } catch (err) {
                if (err?.status !== 429) throw err;
                await new Promise((res) => setTimeout(res, 100));
            }
        }
        check(done, 'admitted again after the stream was closed', done, true);
    });
}

clearTimeout(deadline);
console.log(`router_openai: ${nok} checks passed, ${nfail} failed`);
process.exit(nfail ? 1 : 0);
