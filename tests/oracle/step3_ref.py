#!/usr/bin/python3
"""step3_ref.py: an independent numpy reference of the Step-3 text forward pass.

Written from the model description (docs/models.md, DESIGN §1) and the file formats alone, not
from afd's C code: its own safetensors reader, its own BF16 / FP8-e4m3 decoding (from the format
definitions), its own config parsing, and the forward pass in float64.

    step3_ref.py --model DIR --tokens 0,15,128805 --logits OUT.f32
        writes float32 little-endian logits [n_tokens, vocab], row-major
    step3_ref.py --model DIR --tokens 0,15,128805 --compare AFD.f32 [--tol 1e-3]
        prints each position's relative L2 error ||afd - ref|| / ||ref|| and exits 1 if any
        exceeds the tolerance (or the file has the wrong size)

Runs with Debian's /usr/bin/python3 and python3-numpy; no other dependency.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# ----------------------------------------------------------------------------------------------
# Number formats

def bf16_to_f32(raw):
    """uint16 array of BF16 bit patterns -> float32 (BF16 is the top half of an IEEE float32)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _e4m3_table():
    """The 256 values of FP8 e4m3 (OCP "E4M3FN"): 1 sign bit, 4 exponent bits with bias 7,
    3 mantissa bits; exponent 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN; no infinities."""
    table = np.zeros(256, dtype=np.float64)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp = (code >> 3) & 0xF
        man = code & 0x7
        if exp == 0xF and man == 0x7:
            value = math.nan
        elif exp == 0:
            value = (man / 8.0) * 2.0 ** (1 - 7)
        else:
            value = (1.0 + man / 8.0) * 2.0 ** (exp - 7)
        table[code] = sign * value
    return table


E4M3 = _e4m3_table()
assert E4M3[0x7E] == 448.0 and E4M3[0x01] == 2.0 ** -9 and E4M3[0x38] == 1.0

DTYPES = {  # safetensors dtype -> (numpy storage type, bytes)
    "F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2),
    "BF16": (np.uint16, 2), "F8_E4M3": (np.uint8, 1),
    "I64": (np.int64, 8), "I32": (np.int32, 4), "U8": (np.uint8, 1),
}


def decode(dtype, raw):
    """Stored array -> float64."""
    if dtype == "BF16":
        return bf16_to_f32(raw).astype(np.float64)
    if dtype == "F8_E4M3":
        return E4M3[raw]
    return raw.astype(np.float64)

# ----------------------------------------------------------------------------------------------
# safetensors: u64 LE header length, JSON header, data section; sharded via index.json


class SafetensorsFile:
    def __init__(self, path):
        self.path = path
        self.map = np.memmap(path, dtype=np.uint8, mode="r")
        if len(self.map) < 8:
            raise ValueError(f"{path}: shorter than the 8-byte header length")
        (hlen,) = struct.unpack("<Q", bytes(self.map[:8]))
        if 8 + hlen > len(self.map):
            raise ValueError(f"{path}: header length {hlen} past end of file")
        header = json.loads(bytes(self.map[8:8 + hlen]).decode("utf-8"))
        header.pop("__metadata__", None)
        self.base = 8 + hlen
        self.tensors = header

    def raw(self, name):
        info = self.tensors[name]
        np_type, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        if end - begin != count * size or self.base + end > len(self.map):
            raise ValueError(f"{self.path}: tensor {name}: bad data_offsets")
        buf = self.map[self.base + begin:self.base + end]
        return info["dtype"], np.frombuffer(buf, dtype=np_type).reshape(info["shape"])


class Checkpoint:
    """All tensors of a model directory: model.safetensors, or shards named by the index."""

    def __init__(self, directory):
        self.files = {}
        self.where = {}
        index = os.path.join(directory, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            for name, fname in weight_map.items():
                self.where[name] = self._file(os.path.join(directory, fname))
        else:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
            if not names:
                raise ValueError(f"{directory}: no .safetensors files")
            for fname in names:
                st = self._file(os.path.join(directory, fname))
                for name in st.tensors:
                    self.where[name] = st
        for name, st in self.where.items():
            if name not in st.tensors:
                raise ValueError(f"{st.path}: index names {name} but the file lacks it")

    def _file(self, path):
        if path not in self.files:
            self.files[path] = SafetensorsFile(path)
        return self.files[path]

    def has(self, name):
        return name in self.where

    def raw(self, name):
        if name not in self.where:
            raise KeyError(f"tensor {name} missing from the checkpoint")
        return self.where[name].raw(name)

    def weight(self, name, index=None):
        """Real-valued weight as float64; block-FP8 weights are multiplied by their block's
        weight_scale_inv. `index` selects one matrix of a stacked [E, ...] tensor."""
        dtype, raw = self.raw(name)
        if index is not None:
            raw = raw[index]
        w = decode(dtype, raw)
        if dtype != "F8_E4M3":
            return w
        sname = name[: -len("weight")] + "weight_scale_inv"
        sdtype, sraw = self.raw(sname)
        if index is not None:
            sraw = sraw[index]
        scale = decode(sdtype, sraw)
        rows, cols = w.shape
        if scale.shape != (-(-rows // 128), -(-cols // 128)):
            raise ValueError(f"{sname}: shape {scale.shape} does not match {name} {w.shape}")
        full = np.repeat(np.repeat(scale, 128, axis=0), 128, axis=1)[:rows, :cols]
        return w * full

# ----------------------------------------------------------------------------------------------
# config.json

DEFAULTS = {
    "hidden_size": 7168, "intermediate_size": 18432, "num_attention_heads": 64,
    "num_attention_groups": 1, "num_hidden_layers": 61, "vocab_size": 128815,
    "rms_norm_eps": 1e-5, "moe_intermediate_size": 5120, "moe_num_experts": 48,
    "moe_top_k": 3, "rope_theta": 500000.0, "max_position_embedding": 65536,
    "share_expert_dim": 5120, "share_q_dim": 2048, "head_dim": 256,
    "norm_expert_weight": False, "moe_layers_enum": ",".join(str(i) for i in range(4, 60)),
}


def load_config(directory):
    with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
        top = json.load(f)
    text = top["text_config"] if "text_config" in top else top
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in text.items() if k in DEFAULTS})
    enum = cfg["moe_layers_enum"]
    if isinstance(enum, str):
        moe = {int(s) for s in enum.split(",") if s.strip()}
    else:
        moe = {int(s) for s in enum}
    cfg["moe_layers"] = moe
    return cfg

# ----------------------------------------------------------------------------------------------
# The forward pass (float64 throughout)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, positions, theta):
    """NeoX-style rotary embedding over the whole last dim: element i pairs with i + d/2."""
    d = x.shape[-1]
    inv_freq = theta ** (-np.arange(0, d // 2, dtype=np.float64) * 2.0 / d)
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]  # [T, d/2]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))[:, None, :]  # [T, 1, d]
    sin = np.sin(np.concatenate([angles, angles], axis=-1))[:, None, :]
    rotated = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * cos + rotated * sin


def swiglu(x, gate, up, down):
    return (silu(x @ gate.T) * (x @ up.T)) @ down.T


class Step3:
    def __init__(self, directory):
        self.cfg = load_config(directory)
        self.ck = Checkpoint(directory)

    def w(self, name, index=None):
        return self.ck.weight(name, index)

    def attention(self, p, a, positions):
        c = self.cfg
        T = a.shape[0]
        nh, nkv, hd = c["num_attention_heads"], c["num_attention_groups"], c["head_dim"]
        q_lr = a @ self.w(p + "self_attn.q_proj.weight").T
        q_lr = rms_norm(q_lr, self.w(p + "self_attn.inter_norm.weight"), c["rms_norm_eps"])
        q = (q_lr @ self.w(p + "self_attn.wq.weight").T).reshape(T, nh, hd)
        k = (a @ self.w(p + "self_attn.k_proj.weight").T).reshape(T, nkv, hd)
        v = (a @ self.w(p + "self_attn.v_proj.weight").T).reshape(T, nkv, hd)
        q = rope(q, positions, c["rope_theta"])
        k = rope(k, positions, c["rope_theta"])
        group = nh // nkv
        causal = np.triu(np.full((T, T), -np.inf), k=1)
        out = np.zeros((T, nh, hd))
        for h in range(nh):
            kh, vh = k[:, h // group, :], v[:, h // group, :]
            scores = q[:, h, :] @ kh.T / math.sqrt(hd) + causal
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            out[:, h, :] = scores @ vh
        return out.reshape(T, nh * hd) @ self.w(p + "self_attn.o_proj.weight").T

    def moe(self, p, f):
        c = self.cfg
        logits = f @ self.w(p + "moe.gate.weight").T  # [T, E]
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        out = swiglu(f, self.w(p + "share_expert.gate_proj.weight"),
                     self.w(p + "share_expert.up_proj.weight"),
                     self.w(p + "share_expert.down_proj.weight"))
        k = c["moe_top_k"]
        for t in range(f.shape[0]):
            top = np.argsort(-probs[t], kind="stable")[:k]
            weights = probs[t, top]
            if c["norm_expert_weight"]:
                weights = weights / weights.sum()
            for e, wt in zip(top, weights):
                y = swiglu(f[t:t + 1], self.w(p + "moe.gate_proj.weight", e),
                           self.w(p + "moe.up_proj.weight", e),
                           self.w(p + "moe.down_proj.weight", e))
                out[t] += wt * y[0]
        return out

    def dense(self, p, f):
        return swiglu(f, self.w(p + "mlp.gate_proj.weight"), self.w(p + "mlp.up_proj.weight"),
                      self.w(p + "mlp.down_proj.weight"))

    def forward(self, tokens):
        c = self.cfg
        eps = c["rms_norm_eps"]
        dtype, emb = self.ck.raw("model.embed_tokens.weight")
        if max(tokens) >= emb.shape[0] or min(tokens) < 0:
            raise ValueError(f"token id out of range [0, {emb.shape[0]})")
        x = decode(dtype, emb[np.asarray(tokens)])
        positions = np.arange(len(tokens))
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            a = rms_norm(x, self.w(p + "input_layernorm.weight"), eps)
            x = x + self.attention(p, a, positions)
            f = rms_norm(x, self.w(p + "post_attention_layernorm.weight"), eps)
            x = x + (self.moe(p, f) if i in c["moe_layers"] else self.dense(p, f))
        x = rms_norm(x, self.w("model.norm.weight"), eps)
        dtype, head = self.ck.raw("lm_head.weight")
        logits = np.empty((len(tokens), head.shape[0]))
        chunk = 16384
        for r in range(0, head.shape[0], chunk):  # bounded memory for large vocabularies
            logits[:, r:r + chunk] = x @ decode(dtype, head[r:r + chunk]).T
        return logits

# ----------------------------------------------------------------------------------------------
# CLI


def compare(ref, path, tol):
    data = np.fromfile(path, dtype="<f4")
    if data.size != ref.size:
        print(f"compare: {path} has {data.size} floats, expected {ref.shape[0]} x {ref.shape[1]}"
              f" = {ref.size}")
        return 1
    got = data.reshape(ref.shape).astype(np.float64)
    worst = 0.0
    bad = 0
    for t in range(ref.shape[0]):
        err = np.linalg.norm(got[t] - ref[t]) / max(np.linalg.norm(ref[t]), 1e-30)
        if not np.isfinite(err):
            err = math.inf
        same = int(np.argmax(got[t]) == np.argmax(ref[t]))
        flag = "" if err <= tol else "  FAIL"
        print(f"pos {t:4d}  rel_l2 {err:.3e}  argmax {int(np.argmax(ref[t]))}"
              f"{'' if same else ' (afd ' + str(int(np.argmax(got[t]))) + ')'}{flag}")
        worst = max(worst, err)
        bad += err > tol
    print(f"compare: {ref.shape[0]} positions, worst rel_l2 {worst:.3e}, tol {tol:g}, "
          f"{bad} over tolerance")
    return 1 if bad else 0


def main(argv):
    ap = argparse.ArgumentParser(description="numpy reference of the Step-3 forward pass")
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 0,15,128805")
    ap.add_argument("--logits", help="write float32 LE logits [n_tokens, vocab] here")
    ap.add_argument("--compare", help="compare these float32 LE logits with the reference")
    ap.add_argument("--tol", type=float, default=1e-3, help="max relative L2 error per position")
    args = ap.parse_args(argv)
    try:
        tokens = [int(s) for s in args.tokens.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--tokens: not a comma-separated list of integers: {args.tokens!r}")
    if not tokens:
        ap.error("--tokens: empty")
    if not args.logits and not args.compare:
        ap.error("give --logits OUT and/or --compare FILE")
    ref = Step3(args.model).forward(tokens)
    if args.logits:
        ref.astype("<f4").tofile(args.logits)
    return compare(ref, args.compare, args.tol) if args.compare else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
