#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_wire (tests/fuzz/corpus/wire/): one valid frame of each type,
laid out from docs/protocol.md independently of proto/wire.c. Dims as in fuzz_wire.c: hidden 64,
top_k 2, 8 experts, 4 layers; the sender field picks the F2A dtype and the fp8 group.
Run from the repository root: tests/fuzz/wire_seeds.py"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire")
HIDDEN, TOP_K, LAYER_NONE = 64, 2, 0xFFFF


def hdr(typ, payload, flags=0, sender=0, mb=0, layer=LAYER_NONE, step=1, n_tok=0):
    return struct.pack("<IBBHIHHQII", 0x31444641, 1, typ, flags, sender, mb, layer, step,
                       n_tok, len(payload)) + payload


def hello(role, status=0, name=b"seed-host", reason=b""):
    fixed = struct.pack("<HHBBHIQHHHHIIIHHBBHI", 1, 1, role, status, 0, 42,
                        0x0123456789ABCDEF, 0, 1, 0, 1, 4, 8, HIDDEN, TOP_K, 0, 1, 2, 0, 128)
    assert len(fixed) == 52
    return fixed + struct.pack("<H", len(name)) + name + struct.pack("<H", len(reason)) + reason


def a2f(n_tok, moe, groups=1):
    p = struct.pack("<%df" % (n_tok * groups), *[0.5] * (n_tok * groups))
    if moe:
        p += struct.pack("<%df" % (n_tok * TOP_K), *[0.5] * (n_tok * TOP_K))
        ids = b"".join(struct.pack("<HH", t % 8, (t + 3) % 8) for t in range(n_tok))
        p += ids + b"\0" * (-len(ids) % 4)
    return p + bytes((t * 3 + i) & 0x7E for t in range(n_tok) for i in range(HIDDEN))


def msg(code, text):
    return struct.pack("<iH", code, len(text)) + text


SEEDS = {
    "hello": hdr(1, hello(1), sender=1),
    "hello_ack_refused": hdr(2, hello(2, 4, b"ffnd-0", b"hidden 64 != 7168")),
    "a2f_moe": hdr(3, a2f(3, True), flags=1, layer=1, n_tok=3),
    "a2f_dense_grouped": hdr(3, a2f(2, False, 2), sender=4, layer=0, n_tok=2),
    "f2a_bf16": hdr(4, b"\x80\x3f" * (2 * HIDDEN), sender=1, layer=2, n_tok=2),
    "f2a_fp8": hdr(4, struct.pack("<2f", 1.0, 2.0) + b"\x38" * (2 * HIDDEN), flags=2, layer=3,
                   n_tok=2),
    "f2a_f32": hdr(4, struct.pack("<f", 1.0) * HIDDEN, flags=4, sender=2, layer=1, n_tok=1),
    "heartbeat": hdr(5, b"", sender=7, step=42),
    "error": hdr(6, msg(-10109, b"expert id 9 >= 8")),
    "goodbye": hdr(7, msg(0, b"draining")),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))
