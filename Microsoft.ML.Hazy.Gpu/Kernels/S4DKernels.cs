using System.Runtime.InteropServices;
using ILGPU;

namespace Microsoft.ML.Hazy.Gpu.Kernels;

/// <summary>The sizes of one S4D Vandermonde launch (channels C, heads H, modes N, length L, block length J, blocks L/J rounded up).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct S4DParams
{
    public int Channels;
    public int Heads;
    public int Modes;
    public int Length;
    public int BlockLength;
    public int Blocks;
}

/// <summary>
/// The S4D Vandermonde product in <c>S4DMath.Kernel</c>'s blocked form, ℓ = bJ + j:
/// K[c, h, ℓ] = 2·Re Σ_n (C̃[c, h, n]·Ā[h, n]^{bJ})·Ā[h, n]^j, reading the powers from outer [H, N, blocks] and
/// inner [H, N, J] (computed by libtorch, so gradients reach log Ā through its exp): no H·N·L tensor and no
/// trigonometry on the device. Complex tensors are interleaved (re, im) float pairs. One thread per output.
/// </summary>
internal static class S4DKernels
{
    /// <summary>K[c, h, ℓ] for one (c, h, ℓ) per thread.</summary>
    public static void Forward(ArrayView<float> cTilde, ArrayView<float> outer, ArrayView<float> inner, ArrayView<float> kernel, S4DParams p)
    {
        long t = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        long total = (long)p.Channels * p.Heads * p.Length;
        if (t >= total)
            return;
        int l = (int)(t % p.Length);
        long ch = t / p.Length;
        int h = (int)(ch % p.Heads), b = l / p.BlockLength, j = l % p.BlockLength;
        float acc = 0f;
        for (int n = 0; n < p.Modes; n++)
        {
            long ci = 2 * (ch * p.Modes + n), hn = (long)h * p.Modes + n;
            long oi = 2 * (hn * p.Blocks + b), ii = 2 * (hn * p.BlockLength + j);
            float cr = cTilde[ci], cim = cTilde[ci + 1], or = outer[oi], oim = outer[oi + 1];
            float ar = cr * or - cim * oim, ai = cr * oim + cim * or;
            acc += ar * inner[ii] - ai * inner[ii + 1];
        }
        kernel[t] = 2f * acc;
    }

    /// <summary>
    /// The gradients of Σ g·K for one (h, n) per thread, with A = C̃·outer: dC̃ = Σ_b dA·conj(outer),
    /// d outer = Σ_c dA·conj(C̃), d inner[j] = 2 Σ_{c,b} g[c, h, bJ + j]·conj(A), where dA = 2 Σ_j g·conj(inner[j])
    /// (libtorch's convention for complex gradients: ∂/∂re + i ∂/∂im).
    /// </summary>
    public static void Backward(ArrayView<float> cTilde, ArrayView<float> outer, ArrayView<float> inner, ArrayView<float> grad,
        ArrayView<float> dC, ArrayView<float> dOuter, ArrayView<float> dInner, S4DParams p)
    {
        long t = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        if (t >= (long)p.Heads * p.Modes)
            return;
        int h = (int)(t / p.Modes);
        for (int b = 0; b < p.Blocks; b++)
        {
            dOuter[2 * (t * p.Blocks + b)] = 0f;
            dOuter[2 * (t * p.Blocks + b) + 1] = 0f;
        }
        for (int j = 0; j < p.BlockLength; j++)
        {
            dInner[2 * (t * p.BlockLength + j)] = 0f;
            dInner[2 * (t * p.BlockLength + j) + 1] = 0f;
        }
        for (int c = 0; c < p.Channels; c++)
        {
            long ci = 2 * (((long)c * p.Heads + h) * p.Modes + (t % p.Modes)), gi = ((long)c * p.Heads + h) * p.Length;
            float cr = cTilde[ci], cim = cTilde[ci + 1], dcr = 0f, dci = 0f;
            for (int b = 0; b < p.Blocks; b++)
            {
                long oi = 2 * (t * p.Blocks + b);
                float or = outer[oi], oim = outer[oi + 1];
                float ar = cr * or - cim * oim, ai = cr * oim + cim * or;
                float dar = 0f, dai = 0f;
                int end = Math.Min(p.BlockLength, p.Length - b * p.BlockLength);
                for (int j = 0; j < end; j++)
                {
                    float g2 = 2f * grad[gi + b * p.BlockLength + j];
                    long ii = 2 * (t * p.BlockLength + j);
                    dar += g2 * inner[ii];
                    dai -= g2 * inner[ii + 1];
                    dInner[ii] += g2 * ar;
                    dInner[ii + 1] -= g2 * ai;
                }
                // dC̃ += dA·conj(outer), d outer += dA·conj(C̃)
                dcr += dar * or + dai * oim;
                dci += dai * or - dar * oim;
                dOuter[oi] += dar * cr + dai * cim;
                dOuter[oi + 1] += dai * cr - dar * cim;
            }
            dC[ci] = dcr;
            dC[ci + 1] = dci;
        }
    }
}
