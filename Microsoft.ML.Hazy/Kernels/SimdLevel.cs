namespace Microsoft.ML.Hazy.Kernels;

/// <summary>The instruction set Hazy's CPU kernels use (<see cref="Attention.FlashAttentionOptions.MaxSimdLevel"/>, <see cref="CpuKernelOptions.MaxSimdLevel"/>).</summary>
public enum SimdLevel
{
    /// <summary>Plain scalar code.</summary>
    Scalar,

    /// <summary>256-bit vectors with fused multiply-add (AVX2 + FMA).</summary>
    Avx2,

    /// <summary>512-bit vectors (AVX-512).</summary>
    Avx512,
}
