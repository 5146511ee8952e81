using System.Runtime.InteropServices;
using ILGPU;

namespace Microsoft.ML.Hazy.Gpu.Kernels;

/// <summary>
/// The scalar settings of one attention launch (passed by value; its layout is part of the PTX entry and of the
/// launcher's argument packing, so it holds only 4-byte fields).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionParams
{
    public int Heads;
    public int QueryLength;
    public int KeyLength;
    public int HeadDim;
    public float Scale;
    public int Causal;
    public int HasKeyLengths;
    public int HasBlockMask;
    public int QueryBlockSize;
    public int KeyBlockSize;
    public int QueryBlocks;
    public int KeyBlocks;
}

/// <summary>
/// Stage-1 FlashAttention kernels (fp32 SIMT, one thread per query or key row, no collectives: cheap on ILGPU's CPU
/// simulator, and each thread streams its row's keys in the order the CPU kernel's tiles do). A group is one query block
/// (forward, dQ) or one key block (dK, dV) of one batch-head; tiles a block mask rules out and key tiles past the causal
/// or padding limit are skipped. Masks follow <c>FlashAttention.Visible</c>: key padding j &lt; len[b], causal
/// j ≤ i + Lk − Lq (bottom-right aligned), block mask [i / Br, j / Bc]; a fully masked row gives O = 0 and lse = −∞.
/// </summary>
internal static class AttentionKernels
{
    /// <summary>The last key row <paramref name="i"/> may see (−1 for none), before the block mask.</summary>
    private static int LastKey(int i, int length, AttentionParams p) =>
        p.Causal != 0 ? Math.Min(length - 1, i + p.KeyLength - p.QueryLength) : length - 1;

    private static int KeyLengthOf(ArrayView<int> keyLengths, int b, AttentionParams p) =>
        p.HasKeyLengths != 0 ? keyLengths[b] : p.KeyLength;

    private static bool TileOn(ArrayView<int> blockMask, int qb, int kb, AttentionParams p) =>
        p.HasBlockMask == 0 || blockMask[qb * p.KeyBlocks + kb] != 0;

    private static float Dot(ArrayView<float> a, long ao, ArrayView<float> b, long bo, int d)
    {
        float s = 0f;
        for (int c = 0; c < d; c++)
            s += a[ao + c] * b[bo + c];
        return s;
    }

    /// <summary>O = softmax(τQKᵀ + mask)V and lse per row, online softmax over the visible keys (Algorithm 1 row by row).</summary>
    public static void Forward(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse,
        ArrayView<int> keyLengths, ArrayView<int> blockMask, AttentionParams p)
    {
        int g = Grid.IdxX, qb = g % p.QueryBlocks, bh = g / p.QueryBlocks, b = bh / p.Heads;
        int i = qb * p.QueryBlockSize + Group.IdxX;
        if (i >= p.QueryLength || Group.IdxX >= p.QueryBlockSize)
            return;
        int d = p.HeadDim;
        long row = (long)bh * p.QueryLength + i, qo = row * d, kv = (long)bh * p.KeyLength * d;
        for (int c = 0; c < d; c++)
            o[qo + c] = 0f;
        int last = LastKey(i, KeyLengthOf(keyLengths, b, p), p);
        float m = float.NegativeInfinity, l = 0f;
        for (int kb = 0; kb * p.KeyBlockSize <= last; kb++)
        {
            if (!TileOn(blockMask, qb, kb, p))
                continue;
            int end = Math.Min((kb + 1) * p.KeyBlockSize, last + 1);
            for (int j = kb * p.KeyBlockSize; j < end; j++)
            {
                long ko = kv + (long)j * d;
                float s = p.Scale * Dot(q, qo, k, ko, d);
                if (s > m)
                {
                    float shrink = MathF.Exp(m - s);
                    for (int c = 0; c < d; c++)
                        o[qo + c] *= shrink;
                    l *= shrink;
                    m = s;
                }
                float e = MathF.Exp(s - m);
                l += e;
                for (int c = 0; c < d; c++)
                    o[qo + c] += e * v[ko + c];
            }
        }
        if (l > 0f)
        {
            float inv = 1f / l;
            for (int c = 0; c < d; c++)
                o[qo + c] *= inv;
            lse[row] = m + MathF.Log(l);
        }
        else
        {
            lse[row] = float.NegativeInfinity;
        }
    }

    /// <summary>The backward's preprocessing: D_i = rowsum(dO ∘ O) (FlashAttention-2).</summary>
    public static void Delta(ArrayView<float> o, ArrayView<float> dO, ArrayView<float> delta, AttentionParams p)
    {
        int g = Grid.IdxX, qb = g % p.QueryBlocks, bh = g / p.QueryBlocks;
        int i = qb * p.QueryBlockSize + Group.IdxX;
        if (i >= p.QueryLength || Group.IdxX >= p.QueryBlockSize)
            return;
        long row = (long)bh * p.QueryLength + i;
        delta[row] = Dot(o, row * p.HeadDim, dO, row * p.HeadDim, p.HeadDim);
    }

    /// <summary>dQ_i = τ Σ_j P_ij (dO_i·V_j − D_i) K_j over row i's visible keys (P recomputed from lse).</summary>
    public static void BackwardQuery(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dO, ArrayView<float> lse,
        ArrayView<float> delta, ArrayView<float> dq, ArrayView<int> keyLengths, ArrayView<int> blockMask, AttentionParams p)
    {
        int g = Grid.IdxX, qb = g % p.QueryBlocks, bh = g / p.QueryBlocks, b = bh / p.Heads;
        int i = qb * p.QueryBlockSize + Group.IdxX;
        if (i >= p.QueryLength || Group.IdxX >= p.QueryBlockSize)
            return;
        int d = p.HeadDim;
        long row = (long)bh * p.QueryLength + i, qo = row * d, kv = (long)bh * p.KeyLength * d;
        for (int c = 0; c < d; c++)
            dq[qo + c] = 0f;
        int last = LastKey(i, KeyLengthOf(keyLengths, b, p), p);
        float rowLse = lse[row], rowDelta = delta[row];
        for (int kb = 0; kb * p.KeyBlockSize <= last; kb++)
        {
            if (!TileOn(blockMask, qb, kb, p))
                continue;
            int end = Math.Min((kb + 1) * p.KeyBlockSize, last + 1);
            for (int j = kb * p.KeyBlockSize; j < end; j++)
            {
                long ko = kv + (long)j * d;
                float pij = MathF.Exp(p.Scale * Dot(q, qo, k, ko, d) - rowLse);
                float ds = pij * (Dot(dO, qo, v, ko, d) - rowDelta);
                for (int c = 0; c < d; c++)
                    dq[qo + c] += ds * k[ko + c];
            }
        }
        for (int c = 0; c < d; c++)
            dq[qo + c] *= p.Scale;
    }

    /// <summary>dV_j = Σ_i P_ij dO_i and dK_j = τ Σ_i P_ij (dO_i·V_j − D_i) Q_i over the queries that see key j.</summary>
    public static void BackwardKey(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> dO, ArrayView<float> lse,
        ArrayView<float> delta, ArrayView<float> dk, ArrayView<float> dv, ArrayView<int> keyLengths, ArrayView<int> blockMask, AttentionParams p)
    {
        int g = Grid.IdxX, kb = g % p.KeyBlocks, bh = g / p.KeyBlocks, b = bh / p.Heads;
        int j = kb * p.KeyBlockSize + Group.IdxX;
        if (j >= p.KeyLength || Group.IdxX >= p.KeyBlockSize)
            return;
        int d = p.HeadDim;
        long ko = ((long)bh * p.KeyLength + j) * d, qbase = (long)bh * p.QueryLength;
        for (int c = 0; c < d; c++)
        {
            dk[ko + c] = 0f;
            dv[ko + c] = 0f;
        }
        if (j >= KeyLengthOf(keyLengths, b, p))
            return;
        // Causal: key j is visible from row i ≥ j − (Lk − Lq).
        int first = p.Causal != 0 ? Math.Max(0, j - (p.KeyLength - p.QueryLength)) : 0;
        for (int qb = first / p.QueryBlockSize; qb < p.QueryBlocks; qb++)
        {
            if (!TileOn(blockMask, qb, kb, p))
                continue;
            int start = Math.Max(qb * p.QueryBlockSize, first), end = Math.Min((qb + 1) * p.QueryBlockSize, p.QueryLength);
            for (int i = start; i < end; i++)
            {
                long row = qbase + i, qo = row * d;
                float pij = MathF.Exp(p.Scale * Dot(q, qo, k, ko, d) - lse[row]);
                float ds = pij * (Dot(dO, qo, v, ko, d) - delta[row]);
                for (int c = 0; c < d; c++)
                {
                    dv[ko + c] += pij * dO[qo + c];
                    dk[ko + c] += ds * q[qo + c];
                }
            }
        }
        for (int c = 0; c < d; c++)
            dk[ko + c] *= p.Scale;
    }
}
