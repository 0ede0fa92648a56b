"""A pre-norm transformer encoder layer on PyTorch's fused attention.

``F.scaled_dot_product_attention`` picks flash or memory-efficient kernels on a GPU, which
``nn.MultiheadAttention`` only does on its inference fast path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EncoderLayer(nn.Module):
    """``dropout`` drops attention weights; ``hidden_dropout`` drops the attention and MLP
    outputs before they join the residual stream (BERT's and SASRec's hidden dropout)."""

    def __init__(self, width: int, heads: int, mlp_dim: int, dropout: float = 0.0, hidden_dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.hidden_dropout = hidden_dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, width))

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, causal: bool = False, queries: int | None = None
    ) -> torch.Tensor:
        """``x`` (B, T, D); ``key_mask`` (B, T) True where a token may be attended to.

        ``queries``: only the first this many positions are computed and returned, (B, queries, D);
        every position still serves as a key and value. A last layer whose other outputs nobody
        reads (the entity embedder's, which keeps only its CLS) then skips most of its cost: the
        output projection and the MLP run on one row instead of every token's."""
        b, t, d = x.shape
        h = d // self.heads
        if queries is None:
            q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, h).permute(2, 0, 3, 1, 4)
        else:
            if causal:
                raise ValueError("queries is for bidirectional layers: a causal prefix would see only itself")
            (w_q, w_kv), (bias_q, bias_kv) = self.qkv.weight.split([d, 2 * d]), self.qkv.bias.split([d, 2 * d])
            normed = self.norm1(x)
            q = F.linear(normed[:, :queries], w_q, bias_q).view(b, queries, self.heads, h).transpose(1, 2)
            k, v = F.linear(normed, w_kv, bias_kv).view(b, t, 2, self.heads, h).permute(2, 0, 3, 1, 4)
            x = x[:, :queries]
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if causal and mask is not None:
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            causal = False
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        attended = self.proj(attn.transpose(1, 2).reshape(b, x.shape[1], d))
        x = x + F.dropout(attended, self.hidden_dropout, self.training)
        return x + F.dropout(self.mlp(self.norm2(x)), self.hidden_dropout, self.training)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)
