"""pixelfly_torch: pixelfly's models in PyTorch, loaded from a native export.

    pftrain export RUN/checkpoints/ckpt-00001000.h5 --out DIR

writes DIR/model.safetensors (every parameter as pixelfly stores it) and DIR/config.json (the
model and each linear layer's pattern). Then

    import pixelfly_torch
    model = pixelfly_torch.load("DIR")              # an nn.Module, fp32, CPU
    logits, loss = model(tokens, targets)           # GPT-2: int64 [B, T] each (-1: ignored)
    logits, loss = model(images, labels)            # ViT / Mixer: [B, S, S, C] normalised, [B]

The module computes what docs/MODELS.md specifies, with the Pixelfly layers kept sparse
(y = x S^T + (x V^T) U^T + b over the stored blocks only), and its parameter names are the
checkpoint's ("h.0.attn.qkv.S"), so state_dict() round-trips with the file. Needs torch
(1.13 or later) and nothing else: the safetensors file is read by read_safetensors below.
docs/FORMATS.md, "Export", describes both files.
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {"F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2)}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file: {name: tensor} in the file's dtype."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        dtype, size = _DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        shape = e["shape"]
        count = (end - begin) // size
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        buf = bytearray(data[base + begin:base + end])
        tensors[name] = torch.frombuffer(buf, dtype=dtype).reshape(shape)
    return tensors, meta


def slot_columns(bs, nf):
    """[bs, nf+1]: the super-column of each (super-row p, slot k): p, then p xor 2^(k-1)."""
    return torch.tensor([[p if k == 0 else p ^ (1 << (k - 1)) for k in range(nf + 1)]
                         for p in range(bs)], dtype=torch.long)


class Linear(nn.Module):
    """A pixelfly linear layer: dense (w [out, in], b) or Pixelfly (S, U, V, b)."""

    def __init__(self, spec):
        super().__init__()
        self.kind, self.inf, self.outf = spec["kind"], spec["in"], spec["out"]
        if self.kind == "dense":
            self.w = nn.Parameter(torch.zeros(self.outf, self.inf))
        else:
            bs, nf, r = spec["bs"], spec["nf"], spec["rank"]
            self.bs, self.nf, self.rank = bs, nf, r
            self.S = nn.Parameter(torch.zeros(bs, nf + 1, self.outf // bs, self.inf // bs))
            if r > 0:
                self.U = nn.Parameter(torch.zeros(self.outf, r))
                self.V = nn.Parameter(torch.zeros(r, self.inf))
            self.register_buffer("cols", slot_columns(bs, nf), persistent=False)
        self.b = nn.Parameter(torch.zeros(self.outf)) if spec.get("bias", True) else None

    def dense_weight(self):
        """W [out, in] = S scattered into its blocks + U V (the densified export's weight)."""
        if self.kind == "dense":
            return self.w
        bs, ob, ib = self.bs, self.outf // self.bs, self.inf // self.bs
        W = torch.zeros(bs, ob, bs, ib, dtype=self.S.dtype)
        rows = torch.arange(bs).unsqueeze(1).expand_as(self.cols)
        W[rows, :, self.cols, :] = self.S
        W = W.reshape(self.outf, self.inf)
        return W + self.U @ self.V if self.rank > 0 else W

    def forward(self, x):
        lead = x.shape[:-1]
        x = x.reshape(-1, self.inf)
        if self.kind == "dense":
            y = x @ self.w.t()
        else:
            # sparse part: super-row p reads the input blocks of its nf+1 super-columns
            xg = x.reshape(-1, self.bs, self.inf // self.bs)[:, self.cols, :]
            y = torch.einsum("npki,pkoi->npo", xg, self.S).reshape(-1, self.outf)
            if self.rank > 0:
                y = y + (x @ self.V.t()) @ self.U.t()
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.outf)


class LayerNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.g = nn.Parameter(torch.ones(n))
        self.b = nn.Parameter(torch.zeros(n))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.g, self.b, self.eps)


def gelu(x):
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, layers, prefix):
        super().__init__()
        self.fc1 = Linear(layers[prefix + ".fc1"])
        self.fc2 = Linear(layers[prefix + ".fc2"])

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, layers, prefix, n_head, causal):
        super().__init__()
        self.qkv = Linear(layers[prefix + ".qkv"])
        self.proj = Linear(layers[prefix + ".proj"])
        self.n_head, self.causal = n_head, causal

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # [q | k | v], heads side by side in each
        q, k, v = (t.reshape(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        if self.causal:
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            att = att.masked_fill(mask, float("-inf"))
        y = att.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2, ViT)."""

    def __init__(self, cfg, l, causal):
        super().__init__()
        L, eps = cfg["layers"], cfg["layer_norm_eps"]
        C = cfg["n_embd"]
        self.ln1 = LayerNorm(C, eps)
        self.attn = Attention(L, f"h.{l}.attn", cfg["n_head"], causal)
        self.ln2 = LayerNorm(C, eps)
        self.mlp = MLP(L, f"h.{l}.mlp")

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.V, C = cfg["vocab_size"], cfg["n_embd"]
        self.wte = nn.Parameter(torch.zeros(cfg["vocab_padded"], C))
        self.wpe = nn.Parameter(torch.zeros(cfg["seq_len"], C))
        self.h = nn.ModuleList(Block(cfg, l, True) for l in range(cfg["n_layer"]))
        self.lnf = LayerNorm(C, cfg["layer_norm_eps"])

    def forward(self, tokens, targets=None):
        """logits [B, T, V] (the real vocabulary), mean loss over targets != -1 (or None)."""
        T = tokens.shape[1]
        x = self.wte[tokens] + self.wpe[:T]
        for blk in self.h:
            x = blk(x)
        logits = (self.lnf(x) @ self.wte.t())[..., :self.V]  # tied head; padding left out
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss


class MixerBlock(nn.Module):
    def __init__(self, cfg, l):
        super().__init__()
        L, eps, D = cfg["layers"], cfg["layer_norm_eps"], cfg["n_embd"]
        self.ln1 = LayerNorm(D, eps)
        self.token = MLP(L, f"h.{l}.token")
        self.ln2 = LayerNorm(D, eps)
        self.mlp = MLP(L, f"h.{l}.mlp")

    def forward(self, x):
        x = x + self.token(self.ln1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp(self.ln2(x))


class Vision(nn.Module):
    """ViT (class token, position embedding) or MLP-Mixer over NHWC images."""

    def __init__(self, cfg):
        super().__init__()
        self.vit = cfg["model_type"] == "vit"
        self.p, self.C = cfg["patch_size"], cfg["channels"]
        D, L = cfg["n_embd"], cfg["layers"]
        P = (cfg["image_size"] // self.p) ** 2
        self.stem = Linear(L["stem"])
        if self.vit:
            self.cls = nn.Parameter(torch.zeros(D))
            self.pos = nn.Parameter(torch.zeros(P + 1, D))
            self.h = nn.ModuleList(Block(cfg, l, False) for l in range(cfg["n_layer"]))
        else:
            self.h = nn.ModuleList(MixerBlock(cfg, l) for l in range(cfg["n_layer"]))
        self.lnf = LayerNorm(D, cfg["layer_norm_eps"])
        self.head = Linear(L["head"])

    def patches(self, images):
        """[B, S, S, C] -> [B, P, p*p*C]: row-major patches, (row, column, channel) inside."""
        B, S, _, C = images.shape
        g, p = S // self.p, self.p
        x = images.reshape(B, g, p, g, p, C).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(B, g * g, p * p * C)

    def forward(self, images, labels=None):
        x = self.stem(self.patches(images))
        if self.vit:
            cls = self.cls.expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1) + self.pos
        for blk in self.h:
            x = blk(x)
        x = self.lnf(x)
        pooled = x[:, 0] if self.vit else x.mean(dim=1)
        logits = self.head(pooled)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss


def build(cfg):
    """The model of a native export's config.json (a dict), parameters zero."""
    if cfg.get("format") != "pixelfly-native":
        raise ValueError("not a native pixelfly export (config.json format is %r); export "
                         "without --densify" % cfg.get("format"))
    return GPT2(cfg) if cfg["model_type"] == "gpt2" else Vision(cfg)


def load(path, dtype=torch.float32):
    """The model in DIR (config.json + model.safetensors), its parameters in `dtype`."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    model = build(cfg)
    tensors, _ = read_safetensors(os.path.join(path, "model.safetensors"))
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True)
    return model.to(dtype)
