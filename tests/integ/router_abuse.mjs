// router_abuse.mjs: raw-socket abuse of afd-router's HTTP front, for
// tests/integ/test_router_abuse.sh (not a tool of its own).
//
//   node router_abuse.mjs --port P --read-timeout-ms T [--model tiny]
//
// The router must run with read_timeout_ms = T (small, e.g. 1500). Cases: garbage bytes, a TLS
// hello on the plain port, wrong HTTP versions, NUL and bare CR in the head, conflicting
// framing, bad chunk sizes, pipelining, a client that sends half a request and stalls (another
// request is served meanwhile; the staller gets 408 and is closed), a slowloris that trickles
// its head (cut at the deadline, counted from its first byte), idle connections that never
// send anything, and a client that vanishes right after its request. Each case bounds its own
// time. Prints "ok: ..." per case, "FAIL: ..." with what was seen; exits 0 when all passed.
import net from 'node:net';
import crypto from 'node:crypto';

const opt = { port: 0, readTimeoutMs: 0, model: 'tiny' };
for (let i = 2; i < process.argv.length; i += 2) {
    const k = process.argv[i], v = process.argv[i + 1];
    if (k === '--port') opt.port = Number(v);
    else if (k === '--read-timeout-ms') opt.readTimeoutMs = Number(v);
    else if (k === '--model') opt.model = v;
    else { console.error(`router_abuse: unknown argument ${k}`); process.exit(2); }
}
if (!opt.port || !opt.readTimeoutMs) { console.error('router_abuse: --port and --read-timeout-ms are required'); process.exit(2); }
const deadline = setTimeout(() => { console.log('FAIL: router_abuse did not finish within 100 s'); process.exit(1); }, 100000);

let nfail = 0;
const show = (b) => JSON.stringify(b.toString('latin1').slice(0, 200));
function fail(what) { nfail++; console.log(`FAIL: ${what}`); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Opens a connection, writes the steps (Buffer/string, or a number = pause in ms), and gathers
// what comes back until the server closes or `waitMs` passes after the last step.
function raw(steps, { waitMs = 3000, end = false } = {}) {
    return new Promise((resolve) => {
        const t0 = Date.now();
        const s = net.connect(opt.port, '127.0.0.1');
        const chunks = [];
        let closed = false, closedAt = 0, timer = null, error = null;
        const finish = () => {
            clearTimeout(timer);
            s.destroy();
            const data = Buffer.concat(chunks);
            const statuses = [...data.toString('latin1').matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
            resolve({ data, closed, ms: closedAt - t0, statuses, status: statuses[0] ?? 0, error });
        };
        s.on('data', (d) => chunks.push(d));
        s.on('error', (e) => { error = e.code; });
        s.on('close', () => { closed = true; closedAt = Date.now(); finish(); });
        s.on('connect', async () => {
            for (const st of steps) {
                if (typeof st === 'number') await sleep(st);
                else if (!s.destroyed) s.write(st);
            }
            if (end && !s.destroyed) s.end();
            timer = setTimeout(finish, waitMs);
        });
    });
}

// A normal request over a fresh connection (fetch): status and JSON.
async function normal(timeoutMs = 15000) {
    const r = await fetch(`http://127.0.0.1:${opt.port}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: opt.model, prompt: 'Hello there', max_tokens: 4, temperature: 0 }),
        signal: AbortSignal.timeout(timeoutMs) });
    return { status: r.status, json: await r.json() };
}

async function expectStatus(name, steps, want, opts = {}) {
    const r = await raw(steps, opts);
    const wants = Array.isArray(want) ? want : [want];
    if (!wants.includes(r.status)) { fail(`${name}: status ${r.status}, want ${wants.join(' or ')}; got ${show(r.data)}`); return r; }
    if (!r.closed && r.status >= 400 && r.status !== 404 && r.status !== 405) fail(`${name}: the connection stayed open after ${r.status}`);
    console.log(`ok: ${name}: ${r.status}`);
    return r;
}

const host = 'Host: 127.0.0.1\r\n';
const body = JSON.stringify({ model: opt.model, prompt: 'x', max_tokens: 1 });

// ---- garbage and malformed heads ---------------------------------------------------------------
const seeded = crypto.createHash('sha256');
let rnd = Buffer.alloc(0);
for (let i = 0; rnd.length < 4096; i++) rnd = Buffer.concat([rnd, seeded.copy().update(String(i)).digest()]);
// The head is parsed once its blank line is in: bytes without one wait for it until the read
// timeout (408) or the head limit (431); with one, the head is refused (400).
const late = { waitMs: opt.readTimeoutMs + 1500 };
await expectStatus('4 KiB of random bytes', [rnd], [400, 408, 431], late);
await expectStatus('4 KiB of random bytes, then a blank line', [rnd, '\r\n\r\n'], [400, 431], late);
// a TLS ClientHello's first bytes on the plain port
await expectStatus('TLS hello on plain HTTP', [Buffer.from('16030100c4010000c00303', 'hex'), crypto.randomBytes(180)], [400, 408], late);
await expectStatus('HTTP/9.9', ['GET /health HTTP/9.9\r\n' + host + '\r\n'], 505);
await expectStatus('HTTP/2 preface', ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'], [400, 505]);
await expectStatus('NUL in a header', ['GET /health HTTP/1.1\r\n' + host + 'X-A: a\0b\r\n\r\n'], 400);
await expectStatus('bare CR in a header', ['GET /health HTTP/1.1\r\n' + host + 'X-A: a\rb\r\n\r\n'], 400);
await expectStatus('no Host in 1.1', ['GET /health HTTP/1.1\r\n\r\n'], 400);
await expectStatus('Content-Length and Transfer-Encoding', [`POST /v1/completions HTTP/1.1\r\n${host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`], 400);
await expectStatus('negative Content-Length', [`POST /v1/completions HTTP/1.1\r\n${host}Content-Length: -1\r\n\r\n`], 400);
await expectStatus('Content-Length of 30 digits', [`POST /v1/completions HTTP/1.1\r\n${host}Content-Length: 999999999999999999999999999999\r\n\r\n`], [400, 413]);
await expectStatus('two different Content-Lengths', [`POST /v1/completions HTTP/1.1\r\n${host}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`], 400);
await expectStatus('bad chunk size', [`POST /v1/completions HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`], 400);
await expectStatus('chunk size overflow', [`POST /v1/completions HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nabc\r\n`], [400, 413]);
await expectStatus('Transfer-Encoding gzip', [`POST /v1/completions HTTP/1.1\r\n${host}Transfer-Encoding: gzip\r\n\r\n`], 501);
await expectStatus('Expect: 100-continue with a body over the limit', [`POST /v1/completions HTTP/1.1\r\n${host}Expect: 100-continue\r\nContent-Length: 1073741824\r\n\r\n`], 413);
await expectStatus('line folding', [`GET /health HTTP/1.1\r\n${host}X-A: a\r\n  folded\r\n\r\n`], 400);
await expectStatus('a 64 KiB request line', [`GET /${'a'.repeat(65536)} HTTP/1.1\r\n${host}\r\n`], [414, 431, 400]);
await expectStatus('1000 header lines', [`GET /health HTTP/1.1\r\n${host}${'X-A: b\r\n'.repeat(1000)}\r\n`], 431);

// ---- pipelining --------------------------------------------------------------------------------
{
    const one = `GET /health HTTP/1.1\r\n${host}\r\n`;
    const post = `POST /tokenize HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{"prompt":"abc"}`;
    const r = await raw([one.repeat(20) + post + one + `GET /health HTTP/1.1\r\n${host}Connection: close\r\n\r\n`], { waitMs: 5000 });
    const want = Array(20).fill(200).concat([200, 200, 200]);
    if (JSON.stringify(r.statuses) !== JSON.stringify(want)) fail(`pipelining: statuses ${JSON.stringify(r.statuses)}, want 23 x 200`);
    else if (!r.data.toString().includes('"count":')) fail('pipelining: no /tokenize answer');
    else console.log('ok: 23 pipelined requests in one write answered in order');
}

// ---- slow clients -------------------------------------------------------------------------------
{
    // half a request, then nothing: the server must keep serving others, then answer 408 and close
    const half = raw([`POST /v1/completions HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`],
                     { waitMs: opt.readTimeoutMs + 3000 });
    const idle = Array.from({ length: 40 }, () => raw([], { waitMs: opt.readTimeoutMs + 3000 }));
    await sleep(100);
    const t0 = Date.now();
    const n = await normal();
    const took = Date.now() - t0;
    if (n.status !== 200 || !n.json.choices?.[0]?.text) fail(`a request while a client stalls: ${n.status} ${JSON.stringify(n.json).slice(0, 200)}`);
    else console.log(`ok: served in ${took} ms while a half request and 40 idle connections wait`);
    const h = await half;
    if (h.status !== 408 || !h.closed) fail(`stalled request: status ${h.status}, closed ${h.closed}, want 408 and closed`);
    else if (h.ms > opt.readTimeoutMs + 1500) fail(`stalled request cut after ${h.ms} ms (read timeout ${opt.readTimeoutMs})`);
    else console.log(`ok: stalled half request: 408 and closed after ${h.ms} ms`);
    const idles = await Promise.all(idle);
    const open = idles.filter((x) => !x.closed).length;
    if (open) fail(`${open} of 40 idle connections still open after the read timeout`);
    else console.log('ok: idle connections closed at the read timeout');
}
{
    // slowloris: a byte every 100 ms forever; the deadline runs from the first byte
    const head = `GET /health HTTP/1.1\r\n${host}X-Slow: ${'z'.repeat(200)}\r\n\r\n`;
    const steps = [];
    for (const ch of head) steps.push(ch, 100);
    const r = await raw(steps, { waitMs: 100 });
    if (!r.closed || r.ms > opt.readTimeoutMs + 1500) fail(`slowloris: closed ${r.closed} after ${r.ms} ms`);
    else if (r.status !== 408) fail(`slowloris: status ${r.status}, want 408`);
    else console.log(`ok: slowloris cut with 408 after ${r.ms} ms`);
}
{
    // a client that sends a generation request and vanishes at once
    const reqs = [];
    for (let i = 0; i < 10; i++) {
        const b = JSON.stringify({ model: opt.model, prompt: `vanish ${i}`, max_tokens: 50, stream: i % 2 === 0 });
        reqs.push(raw([`POST /v1/completions HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`], { waitMs: 1 }));
    }
    await Promise.all(reqs);
    const n = await normal();
    if (n.status !== 200) fail(`after 10 vanishing clients: ${n.status}`);
    else console.log('ok: 10 clients vanished right after their requests; the next one is served');
}

clearTimeout(deadline);
console.log(`router_abuse: ${nfail} failure(s)`);
process.exit(nfail ? 1 : 0);
