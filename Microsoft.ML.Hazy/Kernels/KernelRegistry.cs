using System.Collections.Immutable;
using Microsoft.ML.Hazy.Kernels.Attention;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels;

/// <summary>
/// The attention kernel of one provider. The output must be differentiable with respect to q, k and v to any order:
/// first-order gradients by whatever the provider runs, second-order ones (a backward run with
/// <c>create_graph: true</c>) through differentiable libtorch operations if its own backward is not.
/// </summary>
internal interface IAttentionKernels
{
    /// <summary>Whether this provider runs attention on tensors of this device type and element type.</summary>
    bool Supports(DeviceType device, ScalarType dtype);

    /// <summary>
    /// O = softmax(τQKᵀ + mask)V for q [B, H, Lq, d], k and v [B, H, Lk, d], with every setting of
    /// <paramref name="options"/> honoured, and, when <paramref name="withLogSumExp"/>, the log-sum-exp of each score
    /// row ([B, H, Lq], −∞ for a fully masked row whose output is 0; not differentiable).
    /// </summary>
    (Tensor Output, Tensor? LogSumExp) Attention(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options, bool withLogSumExp);
}

/// <summary>The Monarch product of one provider: y = <see cref="Monarch.MonarchMultiply.Bmm"/>(x, w1, w2) for a 2-D x (B, k·p), differentiable to any order.</summary>
internal interface IMonarchKernels
{
    /// <summary>Whether this provider multiplies tensors of this device type and element type.</summary>
    bool Supports(DeviceType device, ScalarType dtype);

    /// <summary>y (B, s·l) from x (B, k·p), w1 (k, q, p), w2 (l, s, r); shapes are checked by the caller.</summary>
    Tensor Multiply(Tensor x, Tensor w1, Tensor w2);
}

/// <summary>The S4D convolution kernel of one provider (see <see cref="S4D.S4DMath"/> for the formulas), differentiable to any order.</summary>
internal interface IS4DKernels
{
    /// <summary>Whether this provider runs the S4D kernel on real inputs of this device type and element type.</summary>
    bool Supports(DeviceType device, ScalarType dtype);

    /// <summary>K[c, h, ℓ] = 2·Re Σ_n C̃[c, h, n]·Ā[h, n]^ℓ for ℓ &lt; <paramref name="length"/> (the Vandermonde product).</summary>
    Tensor Kernel(Tensor cTilde, Tensor logDA, long length);

    /// <summary>The causal (kernel [1, H, L]) or bidirectional ([2, H, L]) convolution of u [B, L, H].</summary>
    Tensor Convolve(Tensor u, Tensor kernel);
}

/// <summary>
/// A set of kernels for some devices and element types. A provider may leave any family out (null); the registry
/// then asks the next provider, and in the end the <see cref="ReferenceKernels"/>, libtorch operations that run on
/// every device and element type. Providers are immutable: a provider's settings (instruction set, fused paths) are
/// fixed when it is constructed, so tests and benchmarks build their own instead of flipping process-wide switches.
/// </summary>
internal interface IKernelProvider
{
    /// <summary>A short name for logs and test names.</summary>
    string Name { get; }

    /// <summary>Attention, or null when this provider has none.</summary>
    IAttentionKernels? Attention { get; }

    /// <summary>The Monarch product, or null when this provider has none.</summary>
    IMonarchKernels? Monarch { get; }

    /// <summary>The S4D kernel, or null when this provider has none.</summary>
    IS4DKernels? S4D { get; }
}

/// <summary>
/// Chooses the kernels for a device and element type. Today it holds Hazy's CPU SIMD kernels
/// (<see cref="CpuSimdKernels.Default"/>) in front of the libtorch <see cref="ReferenceKernels"/>. The GPU assembly
/// (Microsoft.ML.Hazy.Gpu, a friend assembly through InternalsVisibleTo) registers its own provider once, when it is
/// loaded, with <see cref="Register"/>; a provider registered later is asked first, and a family it leaves out or a
/// device or type it does not support falls through to the earlier ones. Registration is the only mutable state,
/// append-only and meant for start-up; everything else (which SIMD width, which fused path) is a property of a
/// provider instance, and callers that need a particular one (tests, benchmarks) pass it per call.
/// </summary>
internal static class KernelRegistry
{
    private static readonly object Gate = new();
    private static ImmutableArray<IKernelProvider> _providers = [CpuSimdKernels.Default];

    /// <summary>The libtorch reference math: every device and element type, differentiable to any order.</summary>
    public static IKernelProvider Reference => ReferenceKernels.Instance;

    /// <summary>The registered providers, the one asked first first (the reference is not listed: it is always last).</summary>
    public static IReadOnlyList<IKernelProvider> Providers => _providers;

    /// <summary>Adds a provider in front of the registered ones (for the GPU assembly, at load time).</summary>
    public static void Register(IKernelProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        lock (Gate)
            _providers = _providers.Insert(0, provider);
    }

    /// <summary>The attention kernel for tensors of this device type and element type.</summary>
    public static IAttentionKernels Attention(DeviceType device, ScalarType dtype)
    {
        foreach (var provider in _providers)
            if (provider.Attention is { } kernels && kernels.Supports(device, dtype))
                return kernels;
        return Reference.Attention!;
    }

    /// <summary>The Monarch product for tensors of this device type and element type.</summary>
    public static IMonarchKernels Monarch(DeviceType device, ScalarType dtype)
    {
        foreach (var provider in _providers)
            if (provider.Monarch is { } kernels && kernels.Supports(device, dtype))
                return kernels;
        return Reference.Monarch!;
    }

    /// <summary>The S4D kernel for real inputs of this device type and element type.</summary>
    public static IS4DKernels S4D(DeviceType device, ScalarType dtype)
    {
        foreach (var provider in _providers)
            if (provider.S4D is { } kernels && kernels.Supports(device, dtype))
                return kernels;
        return Reference.S4D!;
    }

    /// <summary>
    /// The registry's choice when <paramref name="preferred"/> is null; else <paramref name="preferred"/> when it
    /// supports the device and type, and the reference when it does not: how a caller that names a provider (a test,
    /// a benchmark, a layer given one) still gets a correct result on tensors that provider cannot take.
    /// </summary>
    public static IAttentionKernels Resolve(IAttentionKernels? preferred, DeviceType device, ScalarType dtype) =>
        preferred is not null && preferred.Supports(device, dtype) ? preferred : preferred is null ? Attention(device, dtype) : Reference.Attention!;

    /// <inheritdoc cref="Resolve(IAttentionKernels?, DeviceType, ScalarType)"/>
    public static IMonarchKernels Resolve(IMonarchKernels? preferred, DeviceType device, ScalarType dtype) =>
        preferred is not null && preferred.Supports(device, dtype) ? preferred : preferred is null ? Monarch(device, dtype) : Reference.Monarch!;
}
