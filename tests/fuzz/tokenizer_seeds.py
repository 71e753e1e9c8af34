#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tokenizer (tests/fuzz/corpus/tokenizer/). The first byte of
each seed picks the mode (see tests/fuzz/fuzz_tokenizer.c): 0-3 text, 4 tokenizer.json (+ NUL +
tokenizer_config.json), 5 int32 ids, 6 chat messages. Run from anywhere:
tests/fuzz/tokenizer_seeds.py"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tokenizer")

TEXTS = [
    "Hello world, it's 12345 <|EOT|> \u4e2d\u6587\u30c6\u30b9\u30c8",
    "    def f(x):\n\treturn x  # ok\r\n",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>sys<|BOT|>user\nhi<|EOT|><|BOT|>assistant\n<think>\n",
    "a word,word! sword <|BOT|>  x <|EOT|>   y <|EOT|>! z",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1FA\U0001F1F8 e\u0301 \u0627\u0644\u0639",
    " \u0085 \ufeff \u180e \u3000 \u2028 -- --x-- 1234567890123",
]
BYTES = [b"\xe4\xb8", b"abc\xff\xfedef", b"\xed\xa0\x80\xf4\x90\x80\x80", b"\xf0\x9f\x98"]


def byte_cp(b):
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return b
    return 256 + [c for c in range(256) if c not in printable].index(b)


def tiny_tokenizer():
    vocab = {chr(byte_cp(b)): b for b in range(256)}
    vocab["ab"] = 256
    vocab["\u0120a"] = 257
    return {
        "version": "1.0",
        "added_tokens": [{"id": 258, "content": "<s>", "special": True, "lstrip": True},
                         {"id": 259, "content": "</s>", "special": False, "single_word": True}],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}|\\s+(?!\\S)"},
             "behavior": "Contiguous", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", ["\u0120", "a"]],
                  "ignore_merges": True},
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for i, t in enumerate(TEXTS):
        seeds[f"text{i}"] = bytes([i % 4]) + t.encode()
    for i, b in enumerate(BYTES):
        seeds[f"bytes{i}"] = bytes([i % 4]) + b
    cfg = json.dumps({"bos_token": "<s>", "chat_template": "x"}).encode()
    seeds["load_tiny"] = b"\x04" + json.dumps(tiny_tokenizer()).encode() + b"\x00" + cfg
    seeds["load_bad"] = b"\x04" + b'{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]}}'
    seeds["ids"] = b"\x05" + struct.pack("<12i", 0, 1, 256, 0xAD, 300, 401, 402, 65, 0xE4, 0xB8,
                                         0xAD, -1)
    seeds["ids_odd"] = b"\x05" + struct.pack("<6i", 128797, 100, 200, 0, 128805, 19923) + b"\x01"
    msgs = [{"role": "system", "content": "S  "}, {"role": "user", "content": "hi <|EOT|>"},
            {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                            "text": "b"}]},
            {"role": "user", "content": None}]
    seeds["chat"] = b"\x06" + json.dumps(msgs).encode()
    seeds["chat_bad"] = b"\x06" + b'[{"role":"user","content":[{"type":"image_url"}]}]'
    for name, data in seeds.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
