"""PyTorch reference test of `pftrain export` (make test-torch; tests/torch/run.sh runs it).

For GPT-2, ViT and MLP-Mixer, each dense and Pixelfly (tiny configs, CPU, fp32), and the shipped
GPT-2 tiny Pixelfly and quickstart Mixer configs (SHIPPED): train 2 steps
with pftrain, export native and densified, then on one batch compare pixelfly's logits, loss
and gradients (tests/torch/pf_reference) with
  - the native export loaded into python/pixelfly_torch.py, gradient per parameter;
  - the densified export loaded into the standard architecture (standard_models.py), its
    gradients mapped back onto pixelfly's parameters (dS = the blocks of dW, dU = dW V^T,
    dV = U^T dW; Conv1D and conv relayouts undone).
Tolerances: logits and loss 1e-5, gradients 1e-4, as max |a - b| / max |b| per tensor; for
a gradient whose largest value is below GRAD_FLOOR times the model's largest gradient, that
product is the scale instead. (The Mixer's token-mixing fc2 bias shifts all channels of a token
alike, which every layer norm after it cancels: its exact gradient is 0, pixelfly's and
PyTorch's are rounding noise of ~1e-9, and their ratio means nothing.)
Usage: test_export.py BUILD_DIR WORK_DIR
"""
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
import pixelfly_torch  # noqa: E402
import standard_models  # noqa: E402

TOL_OUT, TOL_GRAD = 1e-5, 1e-4
GRAD_FLOOR = 1e-3
B = 3

PIXELFLY_BLOCK = ["pixelfly.attn_qkv = bs=4 nf=1 rank=4", "pixelfly.attn_proj = bs=4 nf=2",
                  "pixelfly.mlp_fc1 = bs=4 nf=2 rank=4", "pixelfly.mlp_fc2 = bs=4 nf=1 rank=2"]
MODELS = {
    "gpt2": ["model.type = gpt2", "model.n_layer = 2", "model.n_embd = 32", "model.n_head = 2",
             "model.seq_len = 16", "model.vocab_size = 97", "model.mlp_ratio = 3"],
    "vit": ["model.type = vit", "model.n_layer = 2", "model.n_embd = 32", "model.n_head = 2",
            "model.image_size = 16", "model.patch_size = 4", "model.channels = 3",
            "model.num_classes = 10"],
    "mixer": ["model.type = mixer", "model.n_layer = 2", "model.n_embd = 32",
              "model.image_size = 16", "model.patch_size = 4", "model.channels = 3",
              "model.num_classes = 10", "model.token_mlp_dim = 24", "model.channel_mlp_dim = 64"],
}
MIXER_PIXELFLY = ["pixelfly.token_fc1 = bs=4 nf=1 rank=2", "pixelfly.token_fc2 = bs=4 nf=2",
                  "pixelfly.mlp_fc1 = bs=4 nf=2 rank=4", "pixelfly.mlp_fc2 = bs=4 nf=1"]


# The configurations users train, as shipped (configs/), with the data, the run and the
# schedule replaced for a 2-step test: GPT-2 tiny Pixelfly (vocabulary 50257) and the
# quickstart's Mixer (Fashion-MNIST shape). Label smoothing off: the comparison's loss is
# plain cross-entropy (the architecture is what is compared).
SHIPPED = {"gpt2-tiny-pixelfly": ("gpt2", "configs/gpt2-tiny-pixelfly.ini", "tokens.h5"),
           "mixer-fmnist-pixelfly": ("mixer", "configs/mixer-fmnist-pixelfly.ini",
                                     "images28.h5")}


def shipped_lines(path):
    import configparser
    p = configparser.ConfigParser(inline_comment_prefixes=(";",))
    p.read(os.path.join(ROOT, path))
    return [f"{sec}.{k} = {v}" for sec in p.sections() for k, v in p[sec].items()
            if sec in ("model", "pixelfly")]


def write_ini(path, lines):
    sections = {}
    for line in lines:
        key, value = (s.strip() for s in line.split("=", 1))
        sec, k = key.split(".", 1)
        sections.setdefault(sec, []).append(f"{k} = {value}")
    with open(path, "w") as f:
        for sec, kv in sections.items():
            f.write(f"[{sec}]\n" + "\n".join(kv) + "\n")


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def rel(a, b, floor=0.0):
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(b.abs().max().item() if b.numel() else 0.0, floor)
    diff = (a - b).abs().max().item() if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


class Report:
    def __init__(self, what, floor):
        self.what, self.worst, self.failures, self.floor = what, {}, [], floor
        self.skipped = []  # real libraries not installed

    def check(self, kind, name, a, b, tol):
        e = rel(a, b, self.floor if kind == "grad" else 0.0)
        if e > self.worst.get(kind, (-1, ""))[0]:
            self.worst[kind] = (e, name)
        if not e <= tol:
            self.failures.append(f"{self.what}: {kind} {name}: relative error {e:.3g} > {tol:g}")

    def line(self):
        parts = [f"{k} {e:.2e} ({n})" for k, (e, n) in sorted(self.worst.items())]
        skipped = f" ({', '.join(self.skipped)} not installed: not checked)" if self.skipped else ""
        return f"{self.what}: " + ", ".join(parts) + skipped


def make_batch(kind, cfg, rng):
    if kind == "gpt2":
        T, V = cfg["seq_len"], cfg["vocab_size"]
        tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
        targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
        targets[1, 3] = -1  # an ignored target
        return tokens, targets
    S, C = cfg["image_size"], cfg["channels"]
    images = rng.standard_normal((B, S, S, C)).astype(np.float32)
    labels = rng.integers(0, cfg["num_classes"], size=B).astype(np.int32)
    return images, labels


def pixelfly_grad_from_dense(name, dense_grads, dense_params, nat_params, kind, cfg):
    """The gradient pixelfly's parameter `name` gets, from the standard model's gradients."""
    def lin(prefix, std, conv1d):
        G = dense_grads[std + ".weight"]
        if conv1d:
            G = G.t()
        return G, dense_grads[std + ".bias"]

    parts = name.split(".")
    if kind == "gpt2":
        if name == "wte":
            g = torch.zeros_like(nat_params["wte"])
            g[:cfg["vocab_size"]] = dense_grads["transformer.wte.weight"]
            return g
        if name == "wpe":
            return dense_grads["transformer.wpe.weight"]
        if parts[0] == "lnf":
            return dense_grads["transformer.ln_f." + ("weight" if parts[1] == "g" else "bias")]
        m = {"ln1": "ln_1", "ln2": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
        std_prefix, conv1d = f"transformer.h.{parts[1]}.", True
    else:
        vit = kind == "vit"
        if name in ("stem.w", "stem.b"):
            conv = "patch_embed.proj" if vit else "stem.proj"
            if name == "stem.b":
                return dense_grads[conv + ".bias"]
            g = dense_grads[conv + ".weight"]  # [D, C, p, p] -> [D, p*p*C], (row, col, chan)
            return g.permute(0, 2, 3, 1).reshape(g.shape[0], -1)
        if name == "cls":
            return dense_grads["cls_token"].reshape(-1)
        if name == "pos":
            return dense_grads["pos_embed"][0]
        if parts[0] in ("lnf", "head"):
            std = "norm" if parts[0] == "lnf" else "head"
            if parts[0] == "lnf":
                return dense_grads[std + "." + ("weight" if parts[1] == "g" else "bias")]
            return dense_grads["head." + ("weight" if parts[1] == "w" else "bias")]
        m = {"ln1": "norm1", "ln2": "norm2", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
        if not vit:
            m.update({"token.fc1": "mlp_tokens.fc1", "token.fc2": "mlp_tokens.fc2",
                      "mlp.fc1": "mlp_channels.fc1", "mlp.fc2": "mlp_channels.fc2"})
        std_prefix, conv1d = f"blocks.{parts[1]}.", False
    local = ".".join(parts[2:-1])  # e.g. "attn.qkv", "ln1"
    leaf = parts[-1]
    std = std_prefix + m[local]
    if local.startswith("ln"):
        return dense_grads[std + (".weight" if leaf == "g" else ".bias")]
    G, gb = lin(name, std, conv1d)
    prefix = name[:-len(leaf) - 1]
    if leaf == "b":
        return gb
    if leaf == "w":
        return G
    if leaf == "S":
        S = nat_params[prefix + ".S"]
        bs, nf1, ob, ib = S.shape
        cols = pixelfly_torch.slot_columns(bs, nf1 - 1)
        G4 = G.reshape(bs, ob, bs, ib)
        rows = torch.arange(bs).unsqueeze(1).expand_as(cols)
        return G4[rows, :, cols, :]
    if leaf == "U":
        return G @ nat_params[prefix + ".V"].t()
    if leaf == "V":
        return nat_params[prefix + ".U"].t() @ G
    raise KeyError(name)


def one_case(build, work, kind, variant, rng):
    """variant: dense, pixelfly (the tiny MODELS), or a SHIPPED config's name."""
    what = f"{kind} {variant}"
    d = os.path.join(work, f"{kind}-{variant}")
    os.makedirs(d, exist_ok=True)
    if variant in SHIPPED:
        model_lines, shard_name = shipped_lines(SHIPPED[variant][1]), SHIPPED[variant][2]
    else:
        model_lines, shard_name = MODELS[kind], "tokens.h5" if kind == "gpt2" else "images.h5"
    shard = os.path.join(work, shard_name)
    lines = model_lines + [
        f"data.train = {shard}", f"data.val = {shard}", "train.batch_size = 4",
        "train.steps = 2", "train.lr = 1e-2", "train.warmup_steps = 0",
        "train.schedule = constant", "train.eval_every = 0", "train.eval_batches = 1",
        "train.seed = 7", "train.label_smoothing = 0", "run.backend = cpu", "run.log_every = 1",
        f"run.out_dir = {d}/run"]
    if variant == "pixelfly":
        lines += MIXER_PIXELFLY if kind == "mixer" else PIXELFLY_BLOCK
    ini = os.path.join(d, "config.ini")
    write_ini(ini, lines)
    pftrain = os.path.join(build, "pftrain")
    sh(pftrain, ini, "--quiet")
    ckpt = os.path.join(d, "run", "checkpoints", "ckpt-00000002.h5")
    nat, den = os.path.join(d, "native"), os.path.join(d, "dense")
    sh(pftrain, "export", ckpt, "--out", nat)
    sh(pftrain, "export", ckpt, "--out", den, "--densify")

    import json
    with open(os.path.join(nat, "config.json")) as f:
        cfg = json.load(f)
    x, y = make_batch(kind, cfg, rng)
    batch = os.path.join(d, "batch.bin")
    with open(batch, "wb") as f:
        f.write(x.tobytes() + y.tobytes())
    ref_path = os.path.join(d, "ref.safetensors")
    sh(os.path.join(build, "tests", "torch", "pf_reference"), "run", ckpt, str(B), batch,
       ref_path)
    ref, _ = pixelfly_torch.read_safetensors(ref_path)
    grad_max = max(v.abs().max().item() for k, v in ref.items() if k.startswith("grad."))
    rep = Report(what, GRAD_FLOOR * grad_max)

    xt = torch.from_numpy(x).long() if kind == "gpt2" else torch.from_numpy(x)
    yt = torch.from_numpy(y).long()

    # native export -> pixelfly_torch
    model = pixelfly_torch.load(nat)
    logits, loss = model(xt, yt)
    loss.backward()
    rep.check("logits", "native", logits, ref["logits"], TOL_OUT)
    rep.check("loss", "native", loss.reshape(1), ref["loss"], TOL_OUT)
    nat_params = dict(model.named_parameters())
    for name, p in nat_params.items():
        rep.check("grad", "native " + name, p.grad, ref["grad." + name], TOL_GRAD)
    assert set("grad." + n for n in nat_params) == {k for k in ref if k.startswith("grad.")}

    # densified export -> the standard architecture
    std = standard_models.build(os.path.join(den, "config.json"))
    tensors, meta = pixelfly_torch.read_safetensors(os.path.join(den, "model.safetensors"))
    missing, unexpected = std.load_state_dict(tensors, strict=False)
    expect_missing = ["lm_head.weight"] if kind == "gpt2" else []  # tied to wte
    assert list(missing) == expect_missing and not unexpected, (missing, unexpected)
    assert meta.get("format") == "pt", meta
    if kind == "gpt2":
        logits, loss = std(xt, yt)
    else:
        logits = std(xt.permute(0, 3, 1, 2).contiguous())  # NHWC -> NCHW
        loss = torch.nn.functional.cross_entropy(logits, yt)
    loss.backward()
    rep.check("logits", "densified", logits, ref["logits"], TOL_OUT)
    rep.check("loss", "densified", loss.reshape(1), ref["loss"], TOL_OUT)
    dense_grads = {n: p.grad for n, p in std.named_parameters()}
    dense_params = dict(std.named_parameters())
    with torch.no_grad():
        for name in nat_params:
            g = pixelfly_grad_from_dense(name, dense_grads, dense_params, nat_params, kind, cfg)
            rep.check("grad", "densified " + name, g, ref["grad." + name], TOL_GRAD)
        # the densified weights are the native layers' dense_weight(), the same function
        for mod_name, mod in model.named_modules():
            if isinstance(mod, pixelfly_torch.Linear) and mod.kind == "pixelfly":
                key = densified_key(kind, mod_name)
                W = tensors[key + ".weight"]
                if kind == "gpt2":
                    W = W.t()
                rep.check("weight", key, W, mod.dense_weight(), 1e-6)
    check_real_library(rep, kind, den, xt, ref["logits"])
    return rep


def check_real_library(rep, kind, den, xt, ref_logits):
    """The densified export in the real library, when this Python has it (Debian's python3-torch
    comes without transformers and timm, so CI skips this; with them it is checked too):
    GPT-2 through transformers' GPT2LMHeadModel.from_pretrained, ViT and Mixer through timm's
    VisionTransformer and MlpMixer built from config.json's model_args, as README shows."""
    import importlib.util
    import json
    from functools import partial
    lib = "transformers" if kind == "gpt2" else "timm"
    if importlib.util.find_spec(lib) is None:
        rep.skipped.append(lib)
        return
    with torch.no_grad():
        if kind == "gpt2":
            import transformers
            m = transformers.GPT2LMHeadModel.from_pretrained(den).eval()
            logits = m(xt).logits
        else:
            import timm
            with open(os.path.join(den, "config.json")) as f:
                cfg = json.load(f)
            args = dict(cfg["model_args"], act_layer=partial(torch.nn.GELU, approximate="tanh"),
                        norm_layer=partial(torch.nn.LayerNorm, eps=cfg["layer_norm_eps"]))
            cls = (timm.models.mlp_mixer.MlpMixer if kind == "mixer"
                   else timm.models.vision_transformer.VisionTransformer)
            m = cls(**args).eval()
            tensors, _ = pixelfly_torch.read_safetensors(os.path.join(den, "model.safetensors"))
            m.load_state_dict(tensors, strict=True)
            logits = m(xt.permute(0, 3, 1, 2).contiguous())
    rep.check("logits", f"{lib} {lib_version(lib)}", logits, ref_logits, TOL_OUT)


def lib_version(name):
    import importlib.metadata
    return importlib.metadata.version(name)


def densified_key(kind, name):
    parts = name.split(".")
    local = ".".join(parts[2:])
    if kind == "gpt2":
        m = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc1": "mlp.c_fc",
             "mlp.fc2": "mlp.c_proj"}
        return f"transformer.h.{parts[1]}.{m[local]}"
    m = {"token.fc1": "mlp_tokens.fc1", "token.fc2": "mlp_tokens.fc2"}
    if kind == "mixer":
        m.update({"mlp.fc1": "mlp_channels.fc1", "mlp.fc2": "mlp_channels.fc2"})
    return f"blocks.{parts[1]}.{m.get(local, local)}"


def main():
    build, work = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    sh(os.path.join(build, "tests", "torch", "pf_reference"), "shards", work)
    rng = np.random.default_rng(1)
    failures = []
    cases = [(kind, variant) for kind in ("gpt2", "vit", "mixer")
             for variant in ("dense", "pixelfly")]
    cases += [(kind, name) for name, (kind, _, _) in SHIPPED.items()]
    for kind, variant in cases:
        rep = one_case(build, work, kind, variant, rng)
        print(rep.line(), flush=True)
        failures += rep.failures
    for f in failures:
        print("FAIL " + f)
    n = len(cases)
    print(f"test-torch: {n - len({f.split(':')[0] for f in failures})} of {n} cases passed "
          f"(logits/loss to {TOL_OUT:g}, gradients to {TOL_GRAD:g})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
