using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Kernels.S4D;

/// <summary>
/// The S4D kernel on tensors of any floating type (float64 for golden tests, float32 in models): the Vandermonde
/// product that turns discretized modes into a convolution kernel, and the FFT convolution that applies it. This is
/// the libtorch reference math of <see cref="IS4DKernels"/>; the discretization (a parameterization of the layer) lives
/// with the layer in <c>Sequence/S4D</c>.
/// </summary>
internal static class S4DMath
{
    /// <summary>
    /// K[c, h, ℓ] = 2·Re Σ_n C̃[c, h, n]·Ā[h, n]^ℓ for ℓ &lt; <paramref name="length"/>, the Vandermonde product, computed
    /// in blocks ℓ = bJ + j as (C̃·Ā^{bJ}) × Ā^j so no [H, N/2, L] tensor is ever formed.
    /// </summary>
    /// <param name="cTilde">C·B̄, complex [channels, H, N/2].</param>
    /// <param name="logDA">log Ā, complex [H, N/2].</param>
    /// <param name="length">The kernel length L.</param>
    /// <param name="block">The block length J; 0 chooses the power of two nearest above √L.</param>
    /// <returns>The real kernel [channels, H, L].</returns>
    public static Tensor Kernel(Tensor cTilde, Tensor logDA, long length, long block = 0)
    {
        long j = block > 0 ? block : BlockLength(length);
        long blocks = (length + j - 1) / j;
        long channels = cTilde.shape[0], h = cTilde.shape[1], modes = cTilde.shape[2];
        var realType = logDA.real.dtype;
        var w = logDA.unsqueeze(-1);
        using var zero = 0.ToScalar();
        using var one = 1.ToScalar();
        using var two = 2.ToScalar();
        using var blockLength = j.ToScalar();
        using var blockCount = blocks.ToScalar();
        var inner = (w * arange(zero, blockLength, one, realType, logDA.device)).exp();
        var outer = (w * (arange(zero, blockCount, one, realType, logDA.device) * blockLength)).exp();
        var starts = (cTilde.unsqueeze(-1) * outer).permute(1, 0, 3, 2).reshape(h, channels * blocks, modes);
        var k = starts.matmul(inner).real * two;
        return k.reshape(h, channels, blocks * j).narrow(2, 0, length).permute(1, 0, 2);
    }

    /// <summary>The block length of <see cref="Kernel"/>: the power of two at or above √L.</summary>
    public static long BlockLength(long length)
    {
        long j = 1;
        while (j * j < length)
            j *= 2;
        return j;
    }

    /// <summary>
    /// The causal convolution y_t = Σ_{s≤t} k_{t−s} u_s through FFTs of size 2L (zero padding turns circular into
    /// linear convolution); with a backward kernel k' also y_t += Σ_{s&gt;t} k'_{s−t−1} u_s, the reference's
    /// bidirectional convolution, whose backward kernel sees only strictly later steps.
    /// </summary>
    /// <param name="u">The input [B, L, H].</param>
    /// <param name="k">[1, H, L] (causal) or [2, H, L] (forward, backward).</param>
    public static Tensor FftConv(Tensor u, Tensor k)
    {
        long length = u.shape[1];
        long n = 2 * length;
        var circular = k.shape[0] == 1 ? k[0] : Circular(k, n);
        // Transforms along the contiguous last axis of [B, H, L] run 1.5–3× faster than along the time axis of [B, L, H].
        var uf = fft.rfft(u.transpose(1, 2), n, -1);
        return fft.irfft(uf * fft.rfft(circular, n, -1), n, -1).narrow(-1, 0, length).transpose(1, 2);
    }

    /// <summary>
    /// The length-<paramref name="n"/> circular kernel of a two-sided convolution: k[0] at 0..L−1 and k[1] reversed at
    /// n − L..n − 1 (k[1][m] at lag −(m + 1)), the reference's pad(k0, (0, L)) + pad(k1.flip(−1), (L, 0)) for n = 2L.
    /// Exact for inputs of at most n/2 steps.
    /// </summary>
    public static Tensor Circular(Tensor k, long n)
    {
        long length = k.shape[2];
        var forward = nn.functional.pad(k[0], new[] { 0L, n - length });
        var backward = nn.functional.pad(k[1].flip(-1), new[] { n - length, 0L });
        using var one = 1.ToScalar();
        return forward.add(backward, one);
    }
}
