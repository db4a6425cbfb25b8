"""SAM's image-encoder attention through ``torch.nn.functional.scaled_dot_product_attention``.

segment-anything's ``Attention`` builds the full attention matrix by hand: ``(q * scale) @ k^T``,
plus the decomposed relative-position term (MViTv2, ``add_decomposed_rel_pos``), a softmax and a
product with v. The same function, written for SDPA: the relative-position term is an additive
attention mask,

    bias[b, (qh, qw), (kh, kw)] = q[b, qh, qw] . R_h[qh, kh] + q[b, qh, qw] . R_w[qw, kw]

(R_h, R_w from segment-anything's own ``get_rel_pos``; q unscaled, as segment-anything does), so
that PyTorch picks its fused kernel (a memory-efficient CUDA kernel with bias, the CPU flash
kernel) instead of four separate passes over the attention matrix. Equal to segment-anything's
attention within float rounding (tests/sam/test_attention.py: 1e-5 in float32).

One exception, on a CPU: PyTorch has no fused CPU kernel for a mask that needs a gradient (in
UA-SAM training it does: it depends on q, which depends on the adapters upstream), and its
unfused fallback is slower than segment-anything's own code (1.12x on 14 x 14 windows, 1.26x on
the 64 x 64 global grid of a 1024 px input; benchmarks/RESULTS.md). There `SdpaAttention` runs
segment-anything's forward; on CUDA the memory-efficient kernel computes the mask's gradient.

`use_sdpa_attention` switches every ``Attention`` of a model (a ``Sam``, an ``ImageEncoderViT``,
an `UncertaintySam`) to `SdpaAttention` by changing its class, nothing else: parameters,
state-dict keys and hooks stay. ``use_sdpa_attention(model, False)`` switches back.

    sam = build_sam("vit_b")                 # SDPA attention by default
    use_sdpa_attention(sam, enabled=False)   # segment-anything's attention again
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """The decomposed relative-position term of segment-anything as an additive attention mask.

    Args:
        q: unscaled queries (..., q_h * q_w, C), e.g. (B, heads, N, C).
        rel_pos_h, rel_pos_w: the attention's relative-position tables (L_h, C), (L_w, C).
        q_size, k_size: (q_h, q_w) and (k_h, k_w), the token grids of queries and keys.

    Returns:
        (..., q_h * q_w, k_h * k_w) in q's dtype: what ``add_decomposed_rel_pos`` adds to the
        attention logits.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    r_h = get_rel_pos(q_h, k_h, rel_pos_h).to(q.dtype)  # (q_h, k_h, C)
    r_w = get_rel_pos(q_w, k_w, rel_pos_w).to(q.dtype)  # (q_w, k_w, C)
    lead = q.shape[:-2]
    r_q = q.reshape(-1, q_h, q_w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, r_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, r_w)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(*lead, q_h * q_w, k_h * k_w)


class SdpaAttention(Attention):
    """segment-anything's ``Attention`` (same parameters, same state-dict keys) computed with
    ``F.scaled_dot_product_attention``; the relative-position term is its additive mask.

    Not built directly: `use_sdpa_attention` turns existing ``Attention`` modules into this class.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, D) tokens of one window (or of the whole grid) -> (B, H, W, D)."""
        if x.device.type == "cpu" and self.use_rel_pos and self._bias_needs_grad(x):
            return super().forward(x)  # no fused CPU kernel for a mask with a gradient (module docstring)
        return self.forward_sdpa(x)

    def forward_sdpa(self, x: torch.Tensor) -> torch.Tensor:
        """The SDPA computation on any device (`forward` decides when to use it)."""
        batch, height, width, _ = x.shape
        tokens = height * width
        # (3, B, heads, N, head_dim)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (height, width), (height, width))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))

    def _bias_needs_grad(self, x: torch.Tensor) -> bool:
        """Whether autograd will need the gradient of the relative-position mask."""
        if not torch.is_grad_enabled():
            return False
        sources = (x, self.qkv.weight, self.qkv.bias, self.rel_pos_h, self.rel_pos_w)
        return any(t is not None and t.requires_grad for t in sources)


def use_sdpa_attention(model: nn.Module, enabled: bool = True) -> int:
    """Switch the image-encoder attention of ``model`` to SDPA (or back).

    Args:
        model: any module holding segment-anything ``Attention`` modules (``Sam``,
            ``ImageEncoderViT``, `UncertaintySam`, an `UncertaintyModel` around an encoder).
        enabled: True: `SdpaAttention`; False: segment-anything's own ``Attention``.

    Returns:
        How many attention modules were found (each now of the requested kind).

    Raises:
        ValueError: ``model`` holds no segment-anything ``Attention``.
    """
    target = SdpaAttention if enabled else Attention
    found = 0
    for module in model.modules():
        if type(module) in (Attention, SdpaAttention):
            module.__class__ = target
            found += 1
    if not found:
        raise ValueError(
            f"{type(model).__name__} holds no segment-anything image-encoder Attention; pass a Sam, "
            f"an ImageEncoderViT or an UncertaintySam"
        )
    return found


def uses_sdpa_attention(model: nn.Module) -> bool:
    """Whether every segment-anything ``Attention`` in ``model`` is an `SdpaAttention`
    (False when there is none)."""
    kinds = [type(m) is SdpaAttention for m in model.modules() if isinstance(m, Attention)]
    return bool(kinds) and all(kinds)
