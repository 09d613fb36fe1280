"""Plain PyTorch versions of the standard architectures a densified export is named for.

Module and parameter names, shapes and layouts follow Hugging Face transformers'
GPT2LMHeadModel (Conv1D weights stored [in, out]) and timm's VisionTransformer and MlpMixer
(stride-p Conv2d patch embedding over NCHW images), so that a densified export's state dict
loads into them as it does into those libraries (which the test machine does not have).
Only the eps of the layer norms is a parameter: pixelfly uses 1e-5 (transformers' GPT-2 does
too; timm's default is 1e-6). GELU is the tanh form (transformers' "gelu_new", timm's
GELUTanh), as pixelfly's.
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: y = x W + b with W [in, out]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.weight.shape[1])


class GPT2Attention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.c_attn = Conv1D(3 * C, C)
        self.c_proj = Conv1D(C, C)
        self.n_head = n_head

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))
        w = q @ k.transpose(-1, -2) / math.sqrt(hd)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        w = torch.where(causal, w, torch.finfo(w.dtype).min)
        a = w.softmax(dim=-1) @ v
        return self.c_proj(a.transpose(1, 2).reshape(B, T, C))


class GPT2MLP(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.c_fc = Conv1D(H, C)
        self.c_proj = Conv1D(C, H)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # gelu_new


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, eps = c["n_embd"], c["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(C, eps=eps)
        self.attn = GPT2Attention(C, c["n_head"])
        self.ln_2 = nn.LayerNorm(C, eps=eps)
        self.mlp = GPT2MLP(C, c["n_inner"] or 4 * C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = nn.ModuleList(GPT2Block(c) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for blk in self.h:
            x = blk(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = GPT2Model(c)
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_word_embeddings

    def forward(self, ids, labels=None):
        """labels: the next tokens already (pixelfly's targets), -1 ignored."""
        logits = self.lm_head(self.transformer(ids))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=-1)
        return logits, loss


class Mlp(nn.Module):  # timm.layers.Mlp
    def __init__(self, i, h, o):
        super().__init__()
        self.fc1 = nn.Linear(i, h)
        self.fc2 = nn.Linear(h, o)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class PatchEmbed(nn.Module):  # timm.layers.PatchEmbed
    def __init__(self, p, C, D):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=p, stride=p)

    def forward(self, x):  # NCHW -> [B, P, D], patches row-major
        return self.proj(x).flatten(2).transpose(1, 2)


class TimmAttention(nn.Module):
    def __init__(self, D, n_head):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.n_head = n_head

    def forward(self, x):
        B, N, C = x.shape
        hd = C // self.n_head
        qkv = self.qkv(x).reshape(B, N, 3, self.n_head, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q @ k.transpose(-2, -1) * hd ** -0.5).softmax(dim=-1) @ v
        return self.proj(a.transpose(1, 2).reshape(B, N, C))


class VitBlock(nn.Module):
    def __init__(self, D, n_head, H, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.attn = TimmAttention(D, n_head)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.mlp = Mlp(D, H, D)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):  # timm, global_pool="token", class_token=True
    def __init__(self, c, eps):
        super().__init__()
        D, P = c["embed_dim"], (c["img_size"] // c["patch_size"]) ** 2
        self.patch_embed = PatchEmbed(c["patch_size"], c["in_chans"], D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, P + 1, D))
        H = int(D * c["mlp_ratio"])
        self.blocks = nn.ModuleList(VitBlock(D, c["num_heads"], H, eps) for _ in range(c["depth"]))
        self.norm = nn.LayerNorm(D, eps=eps)
        self.head = nn.Linear(D, c["num_classes"])

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


class MixerBlock(nn.Module):
    def __init__(self, D, P, Dt, Dc, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.mlp_tokens = Mlp(P, Dt, P)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.mlp_channels = Mlp(D, Dc, D)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):  # timm, global_pool="avg"
    def __init__(self, c, eps):
        super().__init__()
        D, P = c["embed_dim"], (c["img_size"] // c["patch_size"]) ** 2
        self.stem = PatchEmbed(c["patch_size"], c["in_chans"], D)
        self.blocks = nn.ModuleList(
            MixerBlock(D, P, c["tokens_mlp_dim"], c["channels_mlp_dim"], eps)
            for _ in range(c["depth"]))
        self.norm = nn.LayerNorm(D, eps=eps)
        self.head = nn.Linear(D, c["num_classes"])

    def forward(self, x):
        x = self.stem(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(dim=1))


def build(config_path):
    """The standard model of a densified export's config.json."""
    with open(config_path) as f:
        c = json.load(f)
    if c.get("model_type") == "gpt2":
        return GPT2LMHeadModel(c)
    if c["architecture"].startswith("vit"):
        return VisionTransformer(c, c["layer_norm_eps"])
    return MlpMixer(c, c["layer_norm_eps"])
