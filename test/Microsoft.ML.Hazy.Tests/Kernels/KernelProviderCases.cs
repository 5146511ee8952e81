using System.Runtime.Intrinsics;
using Microsoft.ML.Hazy.Kernels;

namespace Microsoft.ML.Hazy.Tests.Kernels;

/// <summary>One kernel provider under test (public wrapper: the providers themselves are internal).</summary>
public sealed class KernelProviderCase
{
    internal KernelProviderCase(IKernelProvider provider) => Provider = provider;

    internal IKernelProvider Provider { get; }

    /// <summary>The provider's name (the fixture's name in test results).</summary>
    public override string ToString() => Provider.Name;
}

/// <summary>
/// The providers every conformance fixture runs against: the libtorch reference, and Hazy's CPU SIMD kernels at each
/// instruction set this machine has (scalar, 256-bit AVX2, 512-bit AVX-512), with the alternative fused paths (AVX-512
/// attention's general forward, the fused Monarch backward). A new provider (the GPU assembly's) is added here.
/// </summary>
public static class KernelProviderCases
{
    private static readonly bool HasAvx2 = TileMathLevels.Best >= SimdLevel.Avx2;
    private static readonly bool HasAvx512 = TileMathLevels.Best >= SimdLevel.Avx512;

    private static KernelProviderCase Cpu(SimdLevel level, bool fusedForward = true, bool fusedMonarchBackward = false) =>
        new(new CpuSimdKernels(new CpuKernelOptions { MaxSimdLevel = level, FusedAttentionForward = fusedForward, FusedMonarchBackward = fusedMonarchBackward }));

    /// <summary>Attention providers.</summary>
    public static IEnumerable<KernelProviderCase> Attention()
    {
        yield return new KernelProviderCase(KernelRegistry.Reference);
        yield return Cpu(SimdLevel.Scalar);
        if (HasAvx2)
            yield return Cpu(SimdLevel.Avx2);
        if (HasAvx512)
        {
            yield return Cpu(SimdLevel.Avx512);
            yield return Cpu(SimdLevel.Avx512, fusedForward: false);
        }
    }

    /// <summary>Monarch providers (the CPU kernel needs 256-bit SIMD).</summary>
    public static IEnumerable<KernelProviderCase> Monarch()
    {
        yield return new KernelProviderCase(KernelRegistry.Reference);
        foreach (var level in new[] { SimdLevel.Avx2, SimdLevel.Avx512 }.Where(l => l == SimdLevel.Avx2 ? HasAvx2 && Vector256.IsHardwareAccelerated : HasAvx512))
        {
            yield return Cpu(level);
            yield return Cpu(level, fusedMonarchBackward: true);
        }
    }

    /// <summary>S4D providers (only the reference has an S4D kernel today).</summary>
    public static IEnumerable<KernelProviderCase> S4D() =>
        new[] { new KernelProviderCase(KernelRegistry.Reference) }.Concat(Attention().Skip(1)).Where(c => c.Provider.S4D is not null);
}

internal static class TileMathLevels
{
    public static SimdLevel Best => TileMath.Best;
}
