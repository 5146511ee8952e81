using System.Runtime.Intrinsics;
using Microsoft.ML.Hazy.Kernels.Attention;
using Microsoft.ML.Hazy.Kernels.Monarch;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels;

/// <summary>The settings of one <see cref="CpuSimdKernels"/> provider (what used to be process-wide switches).</summary>
internal sealed record CpuKernelOptions
{
    /// <summary>
    /// The widest instruction set to use; null picks the best this machine has. It caps attention's per-call
    /// <see cref="FlashAttentionOptions.MaxSimdLevel"/>, and the Monarch kernel uses 512-bit tiles (32 rows) only at
    /// <see cref="SimdLevel.Avx512"/> and runs at all only from <see cref="SimdLevel.Avx2"/> (below, the Monarch
    /// product falls back to the reference).
    /// </summary>
    public SimdLevel? MaxSimdLevel { get; init; }

    /// <summary>
    /// Whether attention's forward may take the fused AVX-512 step (<see cref="ForwardStep"/>); off, it always takes the
    /// general path (tiled GEMM, row-wise softmax). For tests and benchmarks that compare the two.
    /// </summary>
    public bool FusedAttentionForward { get; init; } = true;

    /// <summary>
    /// Whether the Monarch backward runs the fused C# kernel instead of four libtorch <c>bmm</c> products. Off by
    /// default: in the monarch benchmark (2 shared cores) the fused backward won only at large nblocks or tiny batches
    /// and lost up to 2× at nblocks 4–16, where libtorch's GEMMs beat the 4×2 register tiles.
    /// </summary>
    public bool FusedMonarchBackward { get; init; }

    /// <summary>The instruction set these options resolve to on this machine.</summary>
    public SimdLevel Level => TileMath.Resolve(MaxSimdLevel);
}

/// <summary>
/// Hazy's CPU kernels in C# SIMD: FlashAttention (<see cref="FlashAttentionKernel"/>) and the fused Monarch product
/// (<see cref="MonarchFusedKernel"/>) on float32 CPU tensors. It has no S4D kernel of its own (libtorch's FFTs are the
/// kernel there). Both custom autograd functions run their own backward for first-order gradients and switch to
/// differentiable libtorch formulas when the backward runs with <c>create_graph: true</c> (libtorch enables grad mode
/// inside a backward exactly then), so second-order gradients are exact.
/// </summary>
internal sealed class CpuSimdKernels : IKernelProvider, IAttentionKernels, IMonarchKernels
{
    /// <summary>The provider the registry uses: the best instruction set, fused attention forward, libtorch Monarch backward.</summary>
    public static CpuSimdKernels Default { get; } = new(new CpuKernelOptions());

    /// <summary>Creates a provider with the given settings.</summary>
    public CpuSimdKernels(CpuKernelOptions options)
    {
        Options = options ?? throw new ArgumentNullException(nameof(options));
        Level = options.Level;
        Name = $"cpu-simd {Level}" + (options.FusedAttentionForward ? "" : " general-forward") + (options.FusedMonarchBackward ? " fused-monarch-backward" : "");
    }

    /// <summary>This provider's settings.</summary>
    public CpuKernelOptions Options { get; }

    /// <summary>The instruction set this provider runs.</summary>
    public SimdLevel Level { get; }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public IAttentionKernels Attention => this;

    /// <inheritdoc/>
    public IMonarchKernels? Monarch => Level >= SimdLevel.Avx2 && MonarchFusedKernel.IsSupported ? this : null;

    /// <inheritdoc/>
    public IS4DKernels? S4D => null;

    bool IAttentionKernels.Supports(DeviceType device, ScalarType dtype) => device == DeviceType.CPU && dtype == ScalarType.Float32;

    (Tensor Output, Tensor? LogSumExp) IAttentionKernels.Attention(Tensor q, Tensor k, Tensor v, FlashAttentionOptions options, bool withLogSumExp)
    {
        FlashAttention.ShapeOf(q, k, v);
        var resolved = options.Clone();
        resolved.MaxSimdLevel = resolved.MaxSimdLevel is { } requested && requested < Level ? requested : Level;
        resolved.FusedForward = resolved.FusedForward && Options.FusedAttentionForward;
        var outputs = FlashAttentionFunction.apply(q, k, v, resolved);
        if (withLogSumExp)
            return (outputs[0], outputs[1]);
        outputs[1].Dispose();
        return (outputs[0], null);
    }

    bool IMonarchKernels.Supports(DeviceType device, ScalarType dtype) =>
        Monarch is not null && device == DeviceType.CPU && dtype == ScalarType.Float32;

    Tensor IMonarchKernels.Multiply(Tensor x, Tensor w1, Tensor w2) =>
        MonarchFusedKernel.Multiply(x, w1, w2, wide: Level == SimdLevel.Avx512 && Vector512.IsHardwareAccelerated, Options.FusedMonarchBackward);
}
