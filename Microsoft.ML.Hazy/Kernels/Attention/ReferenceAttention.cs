using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>
/// Attention as plain libtorch operations, on any device and element type: the scores are materialised ([B, H, Lq, Lk]),
/// masked with exactly the kernel's masks (<see cref="FlashAttention.Visible"/>), and dropped with exactly the kernel's
/// counter-based dropout mask (<see cref="FlashAttentionKernel.DropoutKeeps"/>), so that it gives the CPU kernel's
/// results up to rounding. Every operation is differentiable to any order. <see cref="Backward"/> writes the gradients
/// as differentiable formulas: the CPU kernel's autograd function runs it when second-order gradients are requested.
/// </summary>
internal static class ReferenceAttention
{
    /// <summary>The shape of q, k and v, checked: 4-D, matching, one device and one element type.</summary>
    public static AttentionShape ShapeOf(Tensor q, Tensor k, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        foreach (var (t, name) in new[] { (q, "q"), (k, "k"), (v, "v") })
        {
            if (t.dim() != 4)
                throw new ArgumentException($"FlashAttention expects '{name}' of shape [batch, heads, length, headDim]; got [{string.Join(", ", t.shape)}].", name);
            if (t.dtype != q.dtype)
                throw new ArgumentException($"q, k and v must have one element type; '{name}' is {t.dtype} and q is {q.dtype}.", name);
            if (t.device_type != q.device_type || t.device_index != q.device_index)
                throw new ArgumentException($"'{name}' is on {t.device}; q, k and v must be on the same device.", name);
        }
        if (k.shape[0] != q.shape[0] || k.shape[1] != q.shape[1] || k.shape[3] != q.shape[3] || !v.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"Attention shapes do not match: q [{string.Join(", ", q.shape)}], k [{string.Join(", ", k.shape)}], v [{string.Join(", ", v.shape)}]; k and v must be [B, H, Lk, d] with q's B, H and d.");
        var shape = new AttentionShape((int)q.shape[0], (int)q.shape[1], (int)q.shape[2], (int)k.shape[2], (int)q.shape[3]);
        shape.Validate();
        return shape;
    }

    /// <summary>The checks the CPU kernel makes on the options (block sizes and mask, key lengths, dropout), with its messages.</summary>
    public static void Validate(AttentionShape shape, FlashAttentionOptions options)
    {
        var mask = options.BlockMask;
        int br = mask?.QueryBlockSize ?? options.QueryBlockSize, bc = mask?.KeyBlockSize ?? options.KeyBlockSize;
        FlashAttentionOptions.CheckBlockSize(br, nameof(options.QueryBlockSize));
        FlashAttentionOptions.CheckBlockSize(bc, nameof(options.KeyBlockSize));
        int tr = (shape.QueryLength + br - 1) / br, tc = (shape.KeyLength + bc - 1) / bc;
        if (mask is not null && (mask.QueryBlocks != tr || mask.KeyBlocks != tc))
            throw new ArgumentException($"The block mask is {mask.QueryBlocks} × {mask.KeyBlocks} blocks; query length {shape.QueryLength} and key length {shape.KeyLength} in blocks of {br} × {bc} need {tr} × {tc}.", nameof(options));
        if (options.KeyLengths is { } lengths)
        {
            if (lengths.Length != shape.Batch)
                throw new ArgumentException($"KeyLengths has {lengths.Length} entries; the batch has {shape.Batch}.", nameof(options));
            foreach (var len in lengths)
                if (len < 0 || len > shape.KeyLength)
                    throw new ArgumentException($"Key length {len} is outside [0, {shape.KeyLength}].", nameof(options));
        }
        double p = options.DropoutProbability;
        if (!(p >= 0 && p < 1))
            throw new ArgumentOutOfRangeException(nameof(options), p, "The dropout probability must be in [0, 1).");
    }

    /// <summary>O (differentiable) and the log-sum-exp of each score row ([B, H, Lq], detached; −∞ for a fully masked row, whose O is 0).</summary>
    public static (Tensor Output, Tensor LogSumExp) Forward(AttentionShape shape, Tensor q, Tensor k, Tensor v, FlashAttentionOptions options)
    {
        Validate(shape, options);
        using var scope = NewDisposeScope();
        var (p, lse) = Probabilities(shape, q, k, options);
        var keep = KeepScale(shape, options, q.device, q.dtype);
        var dropped = keep is null ? p : p.mul(keep);
        var o = dropped.matmul(v);
        return (o.MoveToOuterDisposeScope(), lse.detach().MoveToOuterDisposeScope());
    }

    /// <summary>
    /// dQ, dK and dV of ⟨dO, O⟩ as differentiable libtorch formulas of q, k, v and dO (FlashAttention Algorithm 4 without
    /// the tiling): dV = P̃ᵀdO, dP = (dO Vᵀ) ∘ keep, dS = P ∘ (dP − rowsum(dP ∘ P)), dQ = τ dS K, dK = τ dSᵀ Q.
    /// </summary>
    public static (Tensor Dq, Tensor Dk, Tensor Dv) Backward(AttentionShape shape, Tensor q, Tensor k, Tensor v, Tensor dO, FlashAttentionOptions options)
    {
        using var scope = NewDisposeScope();
        var (p, _) = Probabilities(shape, q, k, options);
        var keep = KeepScale(shape, options, q.device, q.dtype);
        var dropped = keep is null ? p : p.mul(keep);
        var dv = dropped.transpose(-2, -1).matmul(dO);
        var dDropped = dO.matmul(v.transpose(-2, -1));
        var dp = keep is null ? dDropped : dDropped.mul(keep);
        var rows = dp.mul(p).sum(-1, keepdim: true);
        using var one = 1.ToScalar();
        using var minusOne = (-1).ToScalar();
        var ds = p.mul(dp.add(rows, minusOne));
        using var tau = Scale(shape, options).ToScalar();
        var dq = ds.matmul(k).mul(tau);
        var dk = ds.transpose(-2, -1).matmul(q).mul(tau);
        return (dq.MoveToOuterDisposeScope(), dk.MoveToOuterDisposeScope(), dv.MoveToOuterDisposeScope());
    }

    private static double Scale(AttentionShape shape, FlashAttentionOptions options) => options.Scale ?? 1.0 / Math.Sqrt(shape.HeadDim);

    // P = softmax(τQKᵀ + mask) with fully masked rows 0 (not NaN, in values or gradients), and the rows' log-sum-exp.
    private static (Tensor P, Tensor Lse) Probabilities(AttentionShape shape, Tensor q, Tensor k, FlashAttentionOptions options)
    {
        using var tau = Scale(shape, options).ToScalar();
        var scores = q.matmul(k.transpose(-2, -1)).mul(tau);
        var allowed = Allowed(shape, options, q.device);
        if (allowed is null)
        {
            var plainLse = scores.logsumexp(-1, keepdim: true);
            using var minusOne = (-1).ToScalar();
            return (scores.add(plainLse, minusOne).exp(), plainLse.squeeze(-1));
        }
        using var minusInfinity = double.NegativeInfinity.ToScalar();
        using var zero = 0.ToScalar();
        using var notAllowed = allowed.logical_not();
        using var anyVisible = allowed.any(-1, keepdim: true);
        using var noneVisible = anyVisible.logical_not();
        // A fully masked row gets finite zero scores before the softmax and is zeroed after it, so no −∞ − (−∞) arises.
        var masked = scores.masked_fill(notAllowed, minusInfinity).masked_fill(noneVisible, zero);
        var lse = masked.logsumexp(-1, keepdim: true);
        using var negative = (-1).ToScalar();
        var p = masked.add(lse, negative).exp().masked_fill(noneVisible, zero);
        var reported = lse.masked_fill(noneVisible, minusInfinity).squeeze(-1);
        return (p, reported);
    }

    /// <summary>Which scores each row sees, [B, 1, Lq, Lk] bool (the kernel's causal, key-padding and block masks); null when all.</summary>
    public static Tensor? Allowed(AttentionShape shape, FlashAttentionOptions options, Device device)
    {
        if (!options.Causal && options.KeyLengths is null && options.BlockMask is null)
            return null;
        int lq = shape.QueryLength, lk = shape.KeyLength;
        var single = new bool[(long)lq * lk];
        var perRow = new AttentionShape(1, 1, lq, lk, shape.HeadDim);
        var rowOptions = options.Clone();
        rowOptions.KeyLengths = null;
        for (int i = 0; i < lq; i++)
            for (int j = 0; j < lk; j++)
                single[(long)i * lk + j] = FlashAttention.Visible(perRow, rowOptions, 0, i, j);
        using var scope = NewDisposeScope();
        var allowed = tensor(single, new long[] { 1, 1, lq, lk });
        if (options.KeyLengths is { } lengths)
        {
            var lens = tensor(lengths.Select(l => (long)l).ToArray(), new long[] { shape.Batch, 1, 1, 1 });
            using var start = 0.ToScalar();
            using var end = ((long)lk).ToScalar();
            using var step = 1.ToScalar();
            var keys = arange(start, end, step, ScalarType.Int64).reshape(1, 1, 1, lk);
            allowed = allowed.logical_and(keys.lt(lens));
        }
        return allowed.to(device).MoveToOuterDisposeScope();
    }

    /// <summary>keep / (1 − p) of the kernel's dropout mask ([B, H, Lq, Lk]), or null without dropout.</summary>
    public static Tensor? KeepScale(AttentionShape shape, FlashAttentionOptions options, Device device, ScalarType dtype)
    {
        double p = options.DropoutProbability;
        if (p <= 0)
            return null;
        float keep = (float)(1 / (1 - p));
        int lq = shape.QueryLength, lk = shape.KeyLength, heads = shape.Batch * shape.Heads;
        var values = new float[(long)heads * lq * lk];
        Parallel.For(0, heads, bh =>
        {
            for (int i = 0; i < lq; i++)
                for (int j = 0; j < lk; j++)
                    values[((long)bh * lq + i) * lk + j] = FlashAttentionKernel.DropoutKeeps(options.DropoutSeed, bh, i, j, p) ? keep : 0f;
        });
        using var cpu = tensor(values, new long[] { shape.Batch, shape.Heads, lq, lk });
        return cpu.to(dtype, device);
    }

    /// <summary>
    /// libtorch's <c>scaled_dot_product_attention</c> with the same masks (its binding spells is_casual and has no scale:
    /// q is pre-scaled). No dropout (its random mask would not be the kernel's) and no log-sum-exp.
    /// </summary>
    public static Tensor Sdpa(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options)
    {
        var shape = ShapeOf(q, k, v);
        Validate(shape, options);
        if (options.DropoutProbability > 0)
            throw new NotSupportedException("libtorch's scaled_dot_product_attention cannot regenerate the kernel's dropout mask; use the materialised reference.");
        using var scope = NewDisposeScope();
        var qs = q;
        if (options.Scale is { } scale)
        {
            using var factor = (scale * Math.Sqrt(shape.HeadDim)).ToScalar();
            qs = q.mul(factor);
        }
        bool simpleCausal = options.Causal && shape.QueryLength == shape.KeyLength && options.KeyLengths is null && options.BlockMask is null;
        var mask = simpleCausal ? null : Allowed(shape, options, q.device);
        var result = nn.functional.scaled_dot_product_attention(qs, k, v, mask, 0.0, simpleCausal);
        return result.MoveToOuterDisposeScope();
    }
}
