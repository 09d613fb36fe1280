#!/usr/bin/env python3
"""The PyTorch side of bench/cpu_vs_torch.sh: the same layers and training steps as
`pfbench kernels` and `pfbench step`, in PyTorch eager (or torch.compile) on the CPU.

Not part of pixelfly's test suite and not needed to build or test it. To run it, install
PyTorch (CPU use; any wheel) into a virtual environment:

    python3 -m venv ~/torchenv && ~/torchenv/bin/pip install torch numpy
    PYTHON=~/torchenv/bin/python bench/cpu_vs_torch.sh 2

Commands (all print tab-separated "RESULT" lines that cpu_vs_torch.sh joins with pfbench's
rows, and "#" lines meant for people):

    torch_cpu.py info
        torch version, torch.backends.cpu.get_cpu_capability() and the thread count.
    torch_cpu.py kernels --shapes 3072x768,768x3072 --tokens 2048 --bs 16 --nf 2 --rank 0,32
        per layer shape: the dense F.linear and the Pixelfly module (gather + bmm + low-rank),
        each pass timed alone as pfbench does (fwd; dX: input gradient only; dS / dW: weight
        gradients only) plus a whole forward + backward (every gradient).
    torch_cpu.py step CONFIG [--set section.key=value]... [--compile]
        median time of a training step (forward, backward, clip, AdamW) of the model that
        CONFIG describes (the pixelfly .ini file), its parameter count, the loss of the first
        step (from the initial weights) and the process's peak resident set.

Every command takes --threads T (torch.set_num_threads), --warmup W and --steps K: the
median of K timed runs after W untimed ones.
"""
import argparse
import configparser
import math
import os
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- the Pixelfly layer -------------------------------------------------------------------

class PixelflyLinear(nn.Module):
    """y = x S^T + (x V^T) U^T + b with pixelfly's flat block butterfly S (src/pattern.h).

    S [bs, nf+1, ob, ib] holds only the stored super-blocks (ob = out/bs, ib = in/bs):
    super-row p, slot k covers super-column q = p (k = 0) or p xor 2^(k-1) (k = 1..nf).
    Forward gathers, for every super-row, the nf+1 input runs x[:, q*ib:(q+1)*ib] it reads
    into one K = (nf+1)*ib run, then does one batched GEMM over the bs super-rows.
    U [out, r], V [r, in] (r = rank, none when 0), b [out]. Autograd gives the backward.
    """

    def __init__(self, n_in, n_out, bs, nf, rank, std):
        super().__init__()
        if n_in % bs or n_out % bs or (1 << nf) > bs:
            raise ValueError(f"Pixelfly {n_in}->{n_out}: bs={bs} nf={nf} does not fit")
        self.n_in, self.n_out, self.bs, self.nf, self.rank = n_in, n_out, bs, nf, rank
        self.ob, self.ib = n_out // bs, n_in // bs
        rows = torch.arange(bs)
        cols = torch.stack([rows] + [rows ^ (1 << (k - 1)) for k in range(1, nf + 1)], 1)
        # idx [bs * (nf+1) * ib]: for super-row p, the input columns of its nf+1 runs in slot
        # order, so x[:, idx].view(N, bs, K) is the gathered input of every super-row.
        idx = (cols[:, :, None] * self.ib + torch.arange(self.ib)).reshape(-1)
        self.register_buffer("idx", idx, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.S = nn.Parameter(torch.empty(bs, nf + 1, self.ob, self.ib))
        self.U = nn.Parameter(torch.empty(n_out, rank)) if rank else None
        self.V = nn.Parameter(torch.empty(rank, n_in)) if rank else None
        self.b = nn.Parameter(torch.zeros(n_out))
        self.reset_parameters(std)

    @torch.no_grad()
    def reset_parameters(self, dense_std):
        # pf_pattern_init_weights: the output variance of a dense layer drawn with dense_std;
        # the sparse part (fan-in fs) takes the share fs / (fs + r), the low-rank part the rest.
        target = self.n_in * dense_std ** 2
        fs = (self.nf + 1) * self.ib
        share = fs / (fs + self.rank)
        self.S.normal_(0.0, math.sqrt(target * share / fs))
        if self.rank:
            self.V.normal_(0.0, math.sqrt(1.0 / self.n_in))
            self.U.normal_(0.0, math.sqrt(target * (1.0 - share) / self.rank))
        self.b.zero_()

    def forward(self, x):
        lead, N = x.shape[:-1], x.shape[:-1].numel()
        x = x.reshape(N, self.n_in)
        K = (self.nf + 1) * self.ib
        xg = x.index_select(1, self.idx).view(N, self.bs, K).transpose(0, 1)  # [bs, N, K]
        w = self.S.transpose(2, 3).reshape(self.bs, K, self.ob)  # [bs, K, ob] = S[p]^T runs
        y = torch.bmm(xg, w).transpose(0, 1).reshape(N, self.n_out)  # [N, out]
        if self.rank:
            y = torch.addmm(y, F.linear(x, self.V), self.U.t())  # + (x V^T) U^T, [N, r] inside
        return (y + self.b).view(*lead, self.n_out)

    @torch.no_grad()
    def dense_weight(self):
        """The [out, in] matrix the layer applies (stored blocks + U V), for the self-check."""
        W = torch.zeros(self.n_out, self.n_in)
        for p in range(self.bs):
            for k in range(self.nf + 1):
                q = int(self.cols[p, k])
                W[p * self.ob:(p + 1) * self.ob, q * self.ib:(q + 1) * self.ib] = self.S[p, k]
        if self.rank:
            W += self.U @ self.V
        return W


def parse_spec(text):
    """A [pixelfly] value: 'dense' -> None, 'bs=16 nf=2 rank=32' -> (16, 2, 32)."""
    text = text.strip()
    if text == "dense":
        return None
    kv = dict(t.split("=") for t in text.replace(",", " ").split() if t != "pixelfly")
    return int(kv["bs"]), int(kv["nf"]), int(kv.get("rank", 0))


def make_linear(n_in, n_out, spec, std):
    """A layer as pixelfly's pf_linear: nn.Linear with N(0, std) weights, or Pixelfly; bias 0."""
    if spec is not None:
        return PixelflyLinear(n_in, n_out, *spec, std)
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, std)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """fc1 -> GELU (tanh approximation, as pixelfly's gelu_fwd) -> fc2."""

    def __init__(self, n_in, hidden, n_out, spec1, spec2, std, out_std):
        super().__init__()
        self.fc1 = make_linear(n_in, hidden, spec1, std)
        self.fc2 = make_linear(hidden, n_out, spec2, out_std)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


# ---- the models of src/models/ --------------------------------------------------------------

class Block(nn.Module):
    """Pre-LN transformer block (model.c): x2 = x + proj(attn(qkv(ln1 x))); y = x2 + mlp(ln2 x2)."""

    def __init__(self, c, std, out_std):
        super().__init__()
        C, self.NH = c["n_embd"], c["n_head"]
        H = int(C * c["mlp_ratio"] + 0.5)
        self.ln1, self.ln2 = nn.LayerNorm(C, eps=1e-5), nn.LayerNorm(C, eps=1e-5)
        self.qkv = make_linear(C, 3 * C, c["attn_qkv"], std)
        self.proj = make_linear(C, C, c["attn_proj"], out_std)
        self.mlp = MLP(C, H, C, c["mlp_fc1"], c["mlp_fc2"], std, out_std)

    def forward(self, x):  # x [B, T, C]
        B, T, C = x.shape
        # qkv [B, T, 3C]: q, k, v of head h at columns h*hd, C + h*hd, 2C + h*hd
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2)
                   for t in self.qkv(self.ln1(x)).split(C, dim=2))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, NH, T, hd]
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class GPT2(nn.Module):
    """gpt2.c: learned position embeddings, pre-LN blocks, lnf, LM head tied to wte; the
    vocabulary padded to a multiple of 64 (padding rows zero, padding logits not in the loss)."""

    def __init__(self, c):
        super().__init__()
        std, L, C, T = c["init_std"], c["n_layer"], c["n_embd"], c["seq_len"]
        self.V = c["vocab_size"]
        Vp = (self.V + 63) // 64 * 64
        self.wte = nn.Parameter(torch.randn(Vp, C) * std)  # [Vp, C]
        with torch.no_grad():
            self.wte[self.V:] = 0
        self.wpe = nn.Parameter(torch.randn(T, C) * (std / 2))  # [T, C]
        self.blocks = nn.ModuleList(Block(c, std, std / math.sqrt(2 * L)) for _ in range(L))
        self.lnf = nn.LayerNorm(C, eps=1e-5)

    def forward(self, tokens, targets):  # [B, T] int64 each
        x = self.wte[tokens] + self.wpe  # [B, T, C]
        for blk in self.blocks:
            x = blk(x)
        logits = self.lnf(x) @ self.wte.t()  # [B, T, Vp]
        return F.cross_entropy(logits[..., :self.V].flatten(0, 1), targets.flatten())


class MixerBlock(nn.Module):
    """vision.c: x2 = x + T(token_mlp(T(ln1 x))); y = x2 + channel_mlp(ln2 x2), T = [B,P,D] <-> [B,D,P]."""

    def __init__(self, c, P, std, out_std):
        super().__init__()
        D = c["n_embd"]
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.token = MLP(P, c["token_mlp_dim"], P, c["token_fc1"], c["token_fc2"], std, out_std)
        self.channel = MLP(D, c["channel_mlp_dim"], D, c["mlp_fc1"], c["mlp_fc2"], std, out_std)

    def forward(self, x):  # x [B, P, D]
        x = x + self.token(self.ln1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel(self.ln2(x))


class Mixer(nn.Module):
    """vision.c: patches -> stem -> Mixer blocks -> lnf -> mean over patches -> head."""

    def __init__(self, c):
        super().__init__()
        std, L, p = c["init_std"], c["n_layer"], c["patch_size"]
        self.p, self.smoothing = p, c["label_smoothing"]
        P, patch_dim = (c["image_size"] // p) ** 2, p * p * c["channels"]
        self.stem = make_linear(patch_dim, c["n_embd"], None, 1 / math.sqrt(patch_dim))
        self.blocks = nn.ModuleList(MixerBlock(c, P, std, std / math.sqrt(2 * L))
                                    for _ in range(L))
        self.lnf = nn.LayerNorm(c["n_embd"], eps=1e-5)
        self.head = make_linear(c["n_embd"], c["num_classes"], None, std)

    def forward(self, images, labels):  # images [B, H, W, C] float, labels [B] int64
        B, H, W, C = images.shape
        p = self.p
        # patches [B, P, p*p*C]: row-major patches, (py, px, c) inside one, as vision.c
        x = images.view(B, H // p, p, W // p, p, C).permute(0, 1, 3, 2, 4, 5)
        x = self.stem(x.reshape(B, (H // p) * (W // p), p * p * C))  # [B, P, D]
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.lnf(x).mean(1))  # [B, K]
        return F.cross_entropy(logits, labels, label_smoothing=self.smoothing)


# ---- configs ----------------------------------------------------------------------------------

# pixelfly's defaults (src/config.c) of the keys these models read.
DEFAULTS = {
    "model": dict(type="gpt2", n_layer=4, n_embd=128, n_head=4, seq_len=128, vocab_size=50257,
                  mlp_ratio=4.0, image_size=28, patch_size=4, channels=1, num_classes=10,
                  token_mlp_dim=64, channel_mlp_dim=256, init_std=0.02),
    "pixelfly": dict(attn_qkv="dense", attn_proj="dense", mlp_fc1="dense", mlp_fc2="dense",
                     token_fc1="dense", token_fc2="dense"),
    "train": dict(batch_size=8, lr=6e-4, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                  grad_clip=1.0, label_smoothing=0.0, seed=1337),
}


def load_config(path, sets):
    """The keys above from a pixelfly .ini file and --set section.key=value overrides."""
    ini = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    ini.read(path)
    for s in sets:
        key, value = s.split("=", 1)
        section, name = key.split(".", 1)
        ini.setdefault(section, {})
        ini[section][name] = value
    if float(ini.get("pixelfly", "budget", fallback="0")) != 0:
        raise SystemExit(f"torch_cpu.py: {path}: pixelfly.budget has no PyTorch twin here: set "
                         "pixelfly.budget=0 and the layer specs it chooses (pftrain summary)")
    c = {}
    for section, keys in DEFAULTS.items():
        for name, default in keys.items():
            raw = ini.get(section, name, fallback=None)
            c[name] = default if raw is None else type(default)(raw)
    for name in DEFAULTS["pixelfly"]:
        c[name] = parse_spec(c[name])
    return c


def build(c):
    """The model, one synthetic batch of the config's shape, and rows (tokens or images) per step."""
    B = c["batch_size"]
    if c["type"] == "gpt2":
        model = GPT2(c)
        tokens = torch.randint(c["vocab_size"], (2, B, c["seq_len"]))  # inputs, targets
        return model, (tokens[0], tokens[1]), B * c["seq_len"]
    if c["type"] == "mixer":
        s = c["image_size"]
        images = torch.randn(B, s, s, c["channels"])
        return Mixer(c), (images, torch.randint(c["num_classes"], (B,))), B
    raise SystemExit(f"torch_cpu.py: model.type={c['type']} has no PyTorch twin here")


def optimizer(model, c):
    """AdamW as pixelfly's: no decay on biases, layernorms and wpe (pf_layout no_decay)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "wpe" else decay).append(p)
    groups = [dict(params=decay, weight_decay=c["weight_decay"]),
              dict(params=no_decay, weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                             fused=True)


# ---- timing -----------------------------------------------------------------------------------

def median_ms(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # Linux: KiB


def result(*fields):
    print("RESULT", *fields, sep="\t", flush=True)


# ---- commands ---------------------------------------------------------------------------------

def cmd_info(args):
    result("info", torch.__version__, torch.backends.cpu.get_cpu_capability(),
           torch.get_num_threads())


def time_passes(layer, weights, x, dy, args):
    """Median ms of fwd, dX, dW (weight gradients) and fwd+bwd (all gradients) of layer(x)."""
    with torch.no_grad():
        fwd = median_ms(lambda: layer(x), args.warmup, args.steps)
    x.requires_grad_(True)
    y = layer(x)  # one graph for the single-gradient passes; retained between them
    dx = median_ms(lambda: torch.autograd.grad(y, x, dy, retain_graph=True),
                   args.warmup, args.steps)
    dw = median_ms(lambda: torch.autograd.grad(y, weights, dy, retain_graph=True),
                   args.warmup, args.steps)
    both = median_ms(lambda: torch.autograd.grad(layer(x), [x] + weights, dy),
                     args.warmup, args.steps)
    x.requires_grad_(False)
    return fwd, dx, dw, both


def cmd_kernels(args):
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    for n_in, n_out in shapes:
        for N in (int(t) for t in args.tokens.split(",")):
            x = torch.rand(N, n_in) * 2 - 1  # [N, in], uniform in [-1, 1) as pfbench
            dy = torch.rand(N, n_out) * 2 - 1  # [N, out]
            shape = f"{n_in}x{n_out}"
            dense = make_linear(n_in, n_out, None, 0.02)
            times = time_passes(dense, [dense.weight, dense.bias], x, dy, args)
            for name, ms in zip(("fwd", "dX", "dW", "fwd+bwd"), times):
                result("kernel", shape, N, "dense", name, f"{ms:.4f}")
            for bs in (int(v) for v in args.bs.split(",")):
                for nf in (int(v) for v in args.nf.split(",")):
                    for r in (int(v) for v in args.rank.split(",")):
                        layer = PixelflyLinear(n_in, n_out, bs, nf, r, 0.02)
                        check_against_dense(layer, x[:64])
                        weights = [p for p in (layer.S, layer.U, layer.V, layer.b)
                                   if p is not None]
                        times = time_passes(layer, weights, x, dy, args)
                        for name, ms in zip(("fwd", "dX", "dS", "fwd+bwd"), times):
                            result("kernel", shape, N, f"bs={bs} nf={nf} r={r}", name,
                                   f"{ms:.4f}")


def check_against_dense(layer, x):
    """The gather + bmm layer must equal x W^T + b with W its expanded dense matrix."""
    with torch.no_grad():
        err = (layer(x) - F.linear(x, layer.dense_weight(), layer.b)).abs().max().item()
    if err > 1e-4:
        raise SystemExit(f"torch_cpu.py: PixelflyLinear differs from its dense matrix by {err}")


def cmd_step(args):
    c = load_config(args.config, args.set)
    torch.manual_seed(c["seed"])
    base_rss = rss_mb()  # the interpreter and torch, before the model
    model, batch, rows = build(c)
    params = sum(p.numel() for p in model.parameters())
    opt = optimizer(model, c)
    params_list = list(model.parameters())
    run = model
    compile_s = 0.0
    if args.compile:
        run = torch.compile(model)
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        loss = run(*batch)
        loss.backward()
        if c["grad_clip"] > 0:
            nn.utils.clip_grad_norm_(params_list, c["grad_clip"])
        opt.step()
        losses.append(loss.item())

    if args.compile:  # the first step compiles forward and backward: timed on its own
        t0 = time.perf_counter()
        step()
        compile_s = time.perf_counter() - t0
    ms = median_ms(step, args.warmup, args.steps)
    result("step", args.config, " ".join(args.set) or "-", "compile" if args.compile else "eager",
           params, f"{ms:.3f}", f"{rows / (ms / 1e3):.1f}", f"{losses[0]:.4f}",
           f"{peak_rss_mb():.1f}", f"{base_rss:.1f}", f"{compile_s:.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("info", "kernels", "step"))
    ap.add_argument("config", nargs="?", help="step: a pixelfly .ini file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--shapes", default="3072x768,768x3072")
    ap.add_argument("--tokens", default="2048")
    ap.add_argument("--bs", default="16")
    ap.add_argument("--nf", default="2")
    ap.add_argument("--rank", default="0,32")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--compile", action="store_true", help="step: torch.compile the model")
    args = ap.parse_args()
    if args.command == "step" and not args.config:
        ap.error("step needs a CONFIG")
    torch.set_num_threads(args.threads)
    {"info": cmd_info, "kernels": cmd_kernels, "step": cmd_step}[args.command](args)


if __name__ == "__main__":
    main()
