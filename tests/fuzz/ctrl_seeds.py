#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ctrl (tests/fuzz/corpus/ctrl/): one valid frame per control
message (some in two shapes), laid out from the "Control plane" section of docs/protocol.md
independently of proto/ctrl.c. tests/unit/proto/test_ctrl.c decodes every seed, so the page and
the code cannot drift apart unnoticed.
Run from anywhere: tests/fuzz/ctrl_seeds.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "ctrl")
LAYER_NONE = 0xFFFF


def hdr(typ, payload, sender=3, step=1):
    return struct.pack("<IBBHIHHQII", 0x31444641, 1, typ, 0, sender, 0, LAYER_NONE, step, 0,
                       len(payload)) + payload


def u32s(xs):
    return struct.pack("<%dI" % len(xs), *xs)


def head(seq, n_prompt, n_stop, req, temp=0.7, top_p=0.9, top_k=-1, max_tokens=64, seed=None,
         ignore_eos=False, logprobs=False, top_logprobs=0, priority=0, deadline_ns=0):
    flags = (1 if seed is not None else 0) | (2 if ignore_eos else 0) | (4 if logprobs else 0)
    h = struct.pack("<QQQffiIIIHBBHH", seq, seed or 0, deadline_ns, temp, top_p, top_k,
                    max_tokens, n_prompt, priority, n_stop, flags, top_logprobs, len(req), 0)
    assert len(h) == 56
    return h


def resv(epoch, n_blocks, rkey_len, lease_ms=2000, base=0x7F0000000000, block_bytes=65536,
         inst=9, block_size=16):
    r = struct.pack("<QQQQIIIHH", epoch, lease_ms, base, block_bytes, inst, block_size, n_blocks,
                    rkey_len, 0)
    assert len(r) == 48
    return r


def submit(seq, prompt, stop, req, **kw):
    return head(seq, len(prompt), len(stop), req, **kw) + u32s(prompt) + u32s(stop) + req


def tokens(seq, ids, finish=0, lps=None, top=None, code=0, msg=b"", usage=(5, 1)):
    k = len(top[0]) if top else 0
    p = struct.pack("<QIBBBBiIIHH", seq, len(ids), finish, 1 if lps is not None else 0, k, 0,
                    code, usage[0], usage[1], len(msg), 0)
    assert len(p) == 32
    p += u32s(ids)
    if lps is not None:
        p += struct.pack("<%df" % len(lps), *lps)
    for row in top or []:
        for cid, lp in row:
            p += struct.pack("<If", cid, lp)
    return p + msg


def status(seq, reason, msg=b""):
    return struct.pack("<QIHH", seq, reason, len(msg), 0) + msg


def register(role, host, port, model):
    p = struct.pack("<IBBHIIIIHHI", 7, role, 0, port, 4096, 16, 64, 8192, len(host), len(model), 0)
    assert len(p) == 32
    return p + host + model


def load():
    p = struct.pack("<QQIBBHIIIIIIIIIIIf", 1234, 5000, 7, 3, 0, 3, 12, 2, 12, 21000, 20000,
                    35000, 3000, 40, 4096, 16, 2, 540.5)
    assert len(p) == 72
    return p


RKEY = bytes(range(40))
PROMPT = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
BLOCKS = [5, 9]


def prefill():
    req = b"req-prefill-1"
    host = b"10.0.0.2"
    p = head(77, len(PROMPT), 1, req, seed=42, logprobs=True, top_logprobs=2)
    p += resv(3, len(BLOCKS), len(RKEY)) + struct.pack("<HHI", 13337, len(host), 0)
    return p + u32s(PROMPT) + u32s([2]) + u32s(BLOCKS) + req + host + RKEY


SEEDS = {
    "register_decode": hdr(16, register(2, b"127.0.0.1", 40123, b"step3-mini")),
    "register_prefill": hdr(16, register(1, b"", 0, b"step3-mini")),
    "load": hdr(17, load()),
    "drain": hdr(18, struct.pack("<QII", 30000, 0, 0)),
    "drain_resume": hdr(18, struct.pack("<QII", 0, 1, 0)),
    "submit": hdr(20, submit(42, [1, 100, 200, 300], [2, 7], b"req-abc-123", seed=1234,
                             logprobs=True, top_logprobs=3, top_k=40, priority=1,
                             deadline_ns=5 * 10**9)),
    "submit_greedy": hdr(20, submit(43, [1], [], b"", temp=0.0, top_p=1.0, max_tokens=1,
                                    ignore_eos=True)),
    "submit_ack": hdr(21, status(42, 0)),
    "submit_refused": hdr(21, status(42, 2, b"prompt 70000 tokens > 65536")),
    "tokens": hdr(22, tokens(42, [11, 12], lps=[-0.5, -1.25],
                             top=[[(11, -0.5), (13, -1.0)], [(12, -1.25), (14, -2.0)]])),
    "tokens_plain": hdr(22, tokens(42, [15])),
    "tokens_stop": hdr(22, tokens(42, [2], finish=1, usage=(5, 3))),
    "tokens_error": hdr(22, tokens(42, [], finish=4, code=-10010, msg=b"ffnd shard 1 went away")),
    "cancel": hdr(23, struct.pack("<Q", 42)),
    "reserve": hdr(24, head(77, 17, 1, b"req-prefill-1", seed=42, logprobs=True, top_logprobs=2)
                   + struct.pack("<II", 3000, 0) + u32s([2]) + b"req-prefill-1"),
    "reserve_ok": hdr(25, struct.pack("<Q", 77) + resv(3, len(BLOCKS), len(RKEY)) + u32s(BLOCKS)
                      + RKEY),
    "reserve_ok_nokey": hdr(25, struct.pack("<Q", 78) + resv(4, 1, 0) + u32s([0])),
    "reserve_fail": hdr(26, status(77, 1, b"need 2 blocks, 0 free")),
    "prefill": hdr(27, prefill()),
    "prefill_done": hdr(28, struct.pack("<QIiIfIBBH", 77, 0, 0, 11, -0.5, 17, 1, 2, 0)
                        + struct.pack("<IfIf", 11, -0.5, 13, -1.0)),
    "prefill_failed": hdr(28, struct.pack("<QIiIfIBBH", 77, 10, -10010, 0, 0.0, 17, 0, 0,
                                          len(b"D 10.0.0.2 down")) + b"D 10.0.0.2 down"),
    "kv_ready": hdr(29, struct.pack("<QQQIIII", 77, 3, 0x1234ABCD, 11, 17, 1, 0)),
    "release": hdr(30, struct.pack("<QQII", 77, 3, 9, 0)),
    "kv_data": hdr(31, struct.pack("<QQIIII", 77, 3, 1, 1024, 16, 0) + bytes(range(16))),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))
