using System.Runtime.InteropServices;
using ILGPU;

namespace Microsoft.ML.Hazy.Gpu.Kernels;

/// <summary>The sizes of one Monarch launch: x (B, K·P), w1 (K, Q, P), w2 (L, S, R) with L·R = K·Q.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct MonarchParams
{
    public int Batch;
    public int K;
    public int Q;
    public int P;
    public int L;
    public int S;
    public int R;
}

/// <summary>
/// The fused Monarch product y = P L Pᵀ R x of <c>MonarchMultiply.Bmm</c> in one launch, one thread per (row b, output
/// block l): the thread computes its R entries of the first product, h[b, l·R + r] = Σ_p w1[k, q, p]·x[b, k·P + p] at
/// k·Q + q = r·L + l (both permutations are index arithmetic), keeps them in h (the layout the backward reads), and
/// then y[b, s·L + l] = Σ_r w2[l, s, r]·h[b, l·R + r].
/// </summary>
internal static class MonarchKernels
{
    /// <summary>y and h for one (b, l) per thread.</summary>
    public static void Forward(ArrayView<float> x, ArrayView<float> w1, ArrayView<float> w2, ArrayView<float> y, ArrayView<float> h, MonarchParams p)
    {
        long t = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        if (t >= (long)p.Batch * p.L)
            return;
        long b = t / p.L;
        int l = (int)(t % p.L);
        long hRow = b * p.L * p.R + (long)l * p.R, xRow = b * p.K * p.P;
        for (int r = 0; r < p.R; r++)
        {
            int m = r * p.L + l, k = m / p.Q, q = m % p.Q;
            long w = ((long)k * p.Q + q) * p.P, xo = xRow + (long)k * p.P;
            float acc = 0f;
            for (int i = 0; i < p.P; i++)
                acc += w1[w + i] * x[xo + i];
            h[hRow + r] = acc;
        }
        long yRow = b * p.L * p.S;
        for (int s = 0; s < p.S; s++)
        {
            long w = ((long)l * p.S + s) * p.R;
            float acc = 0f;
            for (int r = 0; r < p.R; r++)
                acc += w2[w + r] * h[hRow + r];
            y[yRow + (long)s * p.L + l] = acc;
        }
    }
}
