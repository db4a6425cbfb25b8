"""SAM's image-encoder attention through ``torch.nn.functional.scaled_dot_product_attention``.

segment-anything's ``Attention`` builds the full attention matrix by hand: ``(q * scale) @ k^T``,
plus the decomposed relative-position term (MViTv2, ``add_decomposed_rel_pos``), a softmax and a
product with v. The same function, written for SDPA: the relative-position term is an additive
attention mask,

    bias[b, (qh, qw), (kh, kw)] = q[b, qh, qw] . R_h[qh, kh] + q[b, qh, qw] . R_w[qw, kw]

(R_h, R_w as segment-anything's ``get_rel_pos`` gathers them, `relative_position_table`; q unscaled,
as segment-anything does), so
that PyTorch picks its fused kernel (a memory-efficient CUDA kernel with bias, the CPU flash
kernel) instead of four separate passes over the attention matrix. Equal to segment-anything's
attention within float rounding (tests/sam/test_attention.py: 1e-5 in float32).

One exception, on a CPU: PyTorch has no fused CPU kernel for a mask that needs a gradient (in
UA-SAM training it does: it depends on q, which depends on the adapters upstream), and its
unfused fallback is slower than segment-anything's own code (1.12x on 14 x 14 windows, 1.26x on
the 64 x 64 global grid of a 1024 px input; benchmarks/RESULTS.md). There `SdpaAttention` runs
segment-anything's forward; on CUDA the memory-efficient kernel computes the mask's gradient.

A dense additive mask keeps SDPA off the flash kernels. Two kinds keep the relative-position
term inside a fused kernel, gradients through q included:

- ``"fused"`` (`FusedRelPosAttention`): the term is a dot product of an augmented query with an
  augmented key. With rel_h = q . R_h[qh, :] (length k_h) and rel_w = q . R_w[qw, :] (length k_w),

      q' = [scale * q, rel_h, rel_w],   k' = [k, onehot(kh), onehot(kw)]
      q' . k' = scale * q . k + rel_h[q, kh] + rel_w[q, kw]

  so ``F.scaled_dot_product_attention(q', k', v', scale=1)`` without a mask is exactly SAM's
  attention (v zero-padded to the augmented width, the padding sliced off). No mask, so PyTorch
  can pick a flash kernel on CUDA and on the CPU, backward included.
- ``"flex"`` (`FlexRelPosAttention`): ``torch.nn.attention.flex_attention`` with a score_mod that
  adds rel_h[b, h, q, k // k_w] + rel_w[b, h, q, k % k_w]; compiled on CUDA (one compile per shape).
  PyTorch has no FlexAttention backward on a CPU: there, when a gradient is needed, it computes
  the ``"fused"`` path instead.

`use_attention` switches every ``Attention`` of a model (a ``Sam``, an ``ImageEncoderViT``, an
`UncertaintySam`) to one kind by changing its class, nothing else: parameters, state-dict keys
and hooks stay. ``use_sdpa_attention(model, enabled)`` is the older switch between ``"sdpa"`` and
``"segment-anything"``.

    sam = build_sam("vit_b")                 # SDPA attention by default
    use_attention(sam, "fused")              # the relative-position term inside a flash kernel
    use_attention(sam, "segment-anything")   # segment-anything's attention again
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention
from torch import nn

from .checkpoint import resize_rel_pos
from .spec import ATTENTION_KIND_NAMES


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``get_rel_pos`` with its index built on ``rel_pos``'s device.

    ``get_rel_pos`` gathers from the table with an index made on the CPU, so every call copies
    that index to the GPU, which a CUDA graph cannot record (a copy from pageable host memory).
    Here the index is made on the table's device; the values are the same.

    Args:
        q_size, k_size: the query and key lengths along one axis.
        rel_pos: the relative-position table (L, C); linearly resized when L != 2 max(q, k) - 1.

    Returns:
        (q_size, k_size, C): R[i, j], the embedding of query i's offset to key j.
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    table = rel_pos if rel_pos.shape[0] == max_rel_dist else resize_rel_pos(rel_pos, max_rel_dist)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[relative.long()]


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
    r_h = relative_position_table(q_h, k_h, rel_pos_h).to(q.dtype)  # (q_h, k_h, C)
    r_w = relative_position_table(q_w, k_w, rel_pos_w).to(q.dtype)  # (q_w, k_w, C)
    lead = q.shape[:-2]
    r_q = q.reshape(-1, q_h, q_w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, r_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, r_w)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(*lead, q_h * q_w, k_h * k_w)


#: The most bytes of dense relative-position mask one ``SdpaAttention`` SDPA call builds (2 GiB):
#: larger batches go through in chunks (`sdpa_rows_per_call`). Two images of the 64 x 64 global
#: grid in bfloat16 (0.8 GB) stay one call, as the paper's training batch.
SDPA_MASK_BYTES = 2 * 2**30


def sdpa_rows_per_call(heads: int, tokens: int, element_size: int, limit: int | None = None) -> int:
    """How many batch rows of (heads, tokens, tokens) mask, ``element_size`` bytes an element,
    fit in ``limit`` bytes (default `SDPA_MASK_BYTES`): at least 1, since one row over the limit
    still has to be computed."""
    limit = SDPA_MASK_BYTES if limit is None else limit
    return max(1, limit // (heads * tokens * tokens * element_size))


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
        """The SDPA computation on any device (`forward` decides when to use it).

        The mask is dense, (B, heads, N, N): on the 64 x 64 global grid of a 1024 px input that is
        heads * 4096^2 elements per image. So that one call never materialises more than
        `SDPA_MASK_BYTES` of it (sampling 16 hypotheses of 8 images is 128 rows), the batch goes
        through SDPA in chunks of `sdpa_rows_per_call` rows; the result is the same as one call.
        Under autograd each chunk's mask is still kept for the backward pass.
        """
        batch, height, width, _ = x.shape
        tokens = height * width
        # (3, B, heads, N, head_dim)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            rows = sdpa_rows_per_call(self.num_heads, tokens, q.element_size())
            grid = (height, width)
            parts = [
                F.scaled_dot_product_attention(
                    q_part, k_part, v_part, scale=self.scale,
                    attn_mask=decomposed_rel_pos_bias(q_part, self.rel_pos_h, self.rel_pos_w, grid, grid))
                for q_part, k_part, v_part in zip(q.split(rows), k.split(rows), v.split(rows))
            ]
            out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))

    def _bias_needs_grad(self, x: torch.Tensor) -> bool:
        """Whether autograd will need the gradient of the relative-position mask."""
        if not torch.is_grad_enabled():
            return False
        sources = (x, self.qkv.weight, self.qkv.bias, self.rel_pos_h, self.rel_pos_w)
        return any(t is not None and t.requires_grad for t in sources)


def _rel_pos_terms(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """rel_h (..., N, k_h) and rel_w (..., N, k_w): the two factors of the decomposed term for
    unscaled queries q (..., N, C) on a square self-attention grid (N = q_h * q_w, keys = queries)."""
    height, width = grid
    r_h = relative_position_table(height, height, rel_pos_h).to(q.dtype)  # (q_h, k_h, C)
    r_w = relative_position_table(width, width, rel_pos_w).to(q.dtype)  # (q_w, k_w, C)
    lead = q.shape[:-2]
    r_q = q.reshape(-1, height, width, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, r_h).reshape(*lead, height * width, height)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, r_w).reshape(*lead, height * width, width)
    return rel_h, rel_w


class _QkvAttention(Attention):
    """segment-anything's ``Attention`` with the attention product left to `attend`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, D) tokens of one window (or of the whole grid) -> (B, H, W, D)."""
        batch, height, width, _ = x.shape
        # (3, B, heads, N, head_dim)
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = self.attend(q, k, v, (height, width))
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """softmax(scale q k^T + rel-pos term) v for q, k, v (B, heads, N, head_dim) -> same shape."""
        raise NotImplementedError


class FusedRelPosAttention(_QkvAttention):
    """segment-anything's ``Attention`` (same parameters and keys) as one mask-free
    ``F.scaled_dot_product_attention`` on augmented queries and keys (module docstring).

    Not built directly: `use_attention(model, "fused")` turns existing ``Attention`` modules into it.
    """

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if not self.use_rel_pos:
            return F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        height, width = grid
        head_dim = q.shape[-1]
        rel_h, rel_w = _rel_pos_terms(q, self.rel_pos_h, self.rel_pos_w, grid)
        augmented = head_dim + height + width
        pad = -augmented % 8  # fused kernels want head dims in multiples of 8
        tokens = torch.arange(height * width, device=q.device)
        key_code = torch.cat(
            [F.one_hot(tokens // width, height), F.one_hot(tokens % width, width), tokens.new_zeros(len(tokens), pad)], -1
        ).to(k.dtype)  # (N, k_h + k_w + pad)
        q_aug = torch.cat([q * self.scale, rel_h, rel_w, q.new_zeros(*q.shape[:-1], pad)], -1)
        k_aug = torch.cat([k, key_code.expand(*k.shape[:-1], -1)], -1)
        v_aug = F.pad(v, (0, augmented + pad - head_dim))
        return F.scaled_dot_product_attention(q_aug, k_aug, v_aug, scale=1.0)[..., :head_dim]


@functools.cache
def _compiled_flex_attention():
    """``flex_attention`` under ``torch.compile`` (built on first use; eager it is a slow reference)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex_attention(q: torch.Tensor):
    """The FlexAttention callable for ``q``'s device: compiled on CUDA, eager elsewhere."""
    if q.device.type == "cuda":
        return _compiled_flex_attention()
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


class FlexRelPosAttention(FusedRelPosAttention):
    """segment-anything's ``Attention`` (same parameters and keys) through FlexAttention, the
    relative-position term added by its score_mod (module docstring).

    Not built directly: `use_attention(model, "flex")` turns existing ``Attention`` modules into it.
    """

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        if not self.use_rel_pos or (q.device.type == "cpu" and needs_grad):
            return super().attend(q, k, v, grid)  # no FlexAttention backward on a CPU
        width = grid[1]
        rel_h, rel_w = _rel_pos_terms(q, self.rel_pos_h, self.rel_pos_w, grid)

        def add_rel_pos(score, b, h, q_idx, kv_idx):
            return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]

        return _flex_attention(q)(q, k, v, score_mod=add_rel_pos, scale=self.scale)


ATTENTION_KINDS: dict[str, type[Attention]] = dict(
    zip(ATTENTION_KIND_NAMES, (Attention, SdpaAttention, FusedRelPosAttention, FlexRelPosAttention), strict=True)
)
"""The image-encoder attention kinds `use_attention` switches between."""


def use_sdpa_attention(model: nn.Module, enabled: bool = True) -> int:
    """Switch the image-encoder attention of ``model`` to SDPA (or back): ``use_attention(model,
    "sdpa" if enabled else "segment-anything")``."""
    return use_attention(model, "sdpa" if enabled else "segment-anything")


def use_attention(model: nn.Module, kind: str) -> int:
    """Switch the image-encoder attention of ``model`` to one kind.

    Args:
        model: any module holding segment-anything ``Attention`` modules (``Sam``,
            ``ImageEncoderViT``, `UncertaintySam`, an `UncertaintyModel` around an encoder).
        kind: one of `ATTENTION_KINDS`: "segment-anything" (its own ``Attention``), "sdpa"
            (`SdpaAttention`), "fused" (`FusedRelPosAttention`), "flex" (`FlexRelPosAttention`).

    Returns:
        How many attention modules were found (each now of the requested kind).

    Raises:
        ValueError: an unknown ``kind``, or ``model`` holds no segment-anything ``Attention``.
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention kind {kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")
    target = ATTENTION_KINDS[kind]
    found = 0
    for module in model.modules():
        if type(module) in ATTENTION_KINDS.values():
            module.__class__ = target
            found += 1
    if not found:
        raise ValueError(
            f"{type(model).__name__} holds no segment-anything image-encoder Attention; pass a Sam, "
            f"an ImageEncoderViT or an UncertaintySam"
        )
    return found


def attention_kind(model: nn.Module) -> str | None:
    """The kind (a key of `ATTENTION_KINDS`) of every segment-anything ``Attention`` in ``model``;
    None when there is none or they differ."""
    names = {name for module in model.modules() for name, cls in ATTENTION_KINDS.items() if type(module) is cls}
    return names.pop() if len(names) == 1 else None


def uses_sdpa_attention(model: nn.Module) -> bool:
    """Whether every segment-anything ``Attention`` in ``model`` is an `SdpaAttention`
    (False when there is none)."""
    kinds = [type(m) is SdpaAttention for m in model.modules() if isinstance(m, Attention)]
    return bool(kinds) and all(kinds)
