using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels.Monarch;

/// <summary>The Monarch product y = P L Pᵀ R x with the factors laid out as in HazyResearch/fly.</summary>
public static class MonarchMultiply
{
    /// <summary>
    /// Two batched matrix products with the reference's reshape/transpose order
    /// (<c>blockdiag_butterfly_multiply</c>, fly): x (…, k·p), w1 (k, q, p), w2 (l, s, r) with l·r = k·q,
    /// giving y (…, s·l) where output index s·l_count + l holds y[s, l].
    /// </summary>
    /// <param name="x">Input, last axis k·p.</param>
    /// <param name="w1">First block-diagonal factor (k, q, p).</param>
    /// <param name="w2">Second block-diagonal factor (l, s, r).</param>
    public static Tensor Bmm(Tensor x, Tensor w1, Tensor w2)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(w2);
        if (w1.shape.Length != 3 || w2.shape.Length != 3)
            throw new ArgumentException($"Monarch factors must be 3-D; got [{string.Join(", ", w1.shape)}] and [{string.Join(", ", w2.shape)}].");
        long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
        long l = w2.shape[0], s = w2.shape[1], r = w2.shape[2];
        long n = x.shape[^1];
        if (k * p != n || l * r != k * q)
            throw new ArgumentException(
                $"Monarch shapes do not chain: input width {n}, w1 [{k}, {q}, {p}] (needs k·p = {n}), w2 [{l}, {s}, {r}] (needs l·r = k·q = {k * q}).");
        var batchShape = x.shape[..^1];
        long batch = batchShape.Aggregate(1L, (a, b) => a * b);
        using var scope = NewDisposeScope();
        // y[b, s, l] = Σ_r w2[l, s, r] · (Σ_p w1[k, q, p] x[b, k, p]) reshaped (k·q) → (r, l)
        var xk = x.reshape(batch, k, p).transpose(0, 1);
        var out1 = bmm(xk, w1.transpose(-1, -2));
        var h = out1.transpose(0, 1).reshape(batch, r, l).transpose(-1, -2).contiguous().transpose(0, 1);
        var out2 = bmm(h, w2.transpose(-1, -2));
        var shape = batchShape.Append(s * l).ToArray();
        return out2.permute(1, 2, 0).reshape(shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The same product through the kernel the <see cref="KernelRegistry"/> chooses for the tensors' device and element
    /// type: the fused CPU kernel on float32 CPU tensors (machines with 256-bit SIMD), else a registered provider or
    /// <see cref="Bmm"/>. Differentiable to any order: a custom autograd function whose backward is libtorch bmm by default.
    /// </summary>
    /// <param name="x">Input, last axis k·p.</param>
    /// <param name="w1">First block-diagonal factor (k, q, p).</param>
    /// <param name="w2">Second block-diagonal factor (l, s, r).</param>
    public static Tensor Fused(Tensor x, Tensor w1, Tensor w2) => Multiply(x, w1, w2, kernels: null);

    /// <summary>The product through <paramref name="kernels"/> (null: the registry's choice; one that cannot take these tensors: the reference).</summary>
    internal static Tensor Multiply(Tensor x, Tensor w1, Tensor w2, IMonarchKernels? kernels)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(w2);
        bool sameKind = w1.device_type == x.device_type && w2.device_type == x.device_type && w1.dtype == x.dtype && w2.dtype == x.dtype;
        var chosen = sameKind ? KernelRegistry.Resolve(kernels, x.device_type, x.dtype) : KernelRegistry.Reference.Monarch!;
        if (chosen == KernelRegistry.Reference.Monarch || w1.shape.Length != 3 || w2.shape.Length != 3)
            return Bmm(x, w1, w2);
        long k = w1.shape[0], q = w1.shape[1], p = w1.shape[2];
        long l = w2.shape[0], s = w2.shape[1], r = w2.shape[2];
        long n = x.shape[^1];
        if (k * p != n || l * r != k * q)
            return Bmm(x, w1, w2);
        var batchShape = x.shape[..^1];
        long batch = batchShape.Aggregate(1L, (a, b) => a * b);
        using var scope = NewDisposeScope();
        var y = chosen.Multiply(x.reshape(batch, n), w1, w2);
        return y.reshape(batchShape.Append(s * l).ToArray()).MoveToOuterDisposeScope();
    }
}
