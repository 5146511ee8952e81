using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Microsoft.ML.Hazy.Sequence.Attention;

/// <summary>
/// The fused AVX2 + FMA step of the forward pass: four query rows against up to 32 keys, the AVX2 counterpart of
/// <see cref="ForwardTile512"/>. AVX2 has 16 ymm registers, so every register tile holds 8 accumulators (4 rows × 16
/// floats): the scores come out in two 16-key halves and P·V in 16-column slices, each with room left for its loads
/// and broadcasts, so nothing spills.
/// </summary>
internal static unsafe class ForwardTile256
{
    /// <summary>Keys per step (a strip), and the row stride of the probability tile.</summary>
    public const int Keys = 32;

    private static readonly Vector256<float> Iota = Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7);

    /// <summary>As <see cref="ForwardTile512.Scores"/>, for a strip of up to 32 keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores(float* q, int ldq, int d, float* kt, int ldk, int* visible, float* m, float* lv, float* p, float* alpha)
    {
        ScoreHalf(q, ldq, d, kt, ldk, p);
        ScoreHalf(q, ldq, d, kt + 16, ldk, p + 16);
        Softmax(visible, m, lv, p, alpha);
    }

    // S (4 × 16) = Q₄ · Kᵀ: 8 accumulators, 2 loads and 4 broadcasts per key column.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreHalf(float* q, int ldq, int d, float* kt, int ldk, float* p)
    {
        float* a0 = q, a1 = q + ldq, a2 = a1 + ldq, a3 = a2 + ldq;
        Vector256<float> x00 = default, x01 = default, x10 = default, x11 = default, x20 = default, x21 = default, x30 = default, x31 = default;
        float* bp = kt;
        for (int c = 0; c < d; c++, bp += ldk)
        {
            var b0 = Vector256.Load(bp); var b1 = Vector256.Load(bp + 8);
            var s = Vector256.Create(a0[c]);
            x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
            s = Vector256.Create(a1[c]);
            x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
            s = Vector256.Create(a2[c]);
            x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
            s = Vector256.Create(a3[c]);
            x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
        }
        x00.Store(p); x01.Store(p + 8);
        x10.Store(p + Keys); x11.Store(p + Keys + 8);
        x20.Store(p + 2 * Keys); x21.Store(p + 2 * Keys + 8);
        x30.Store(p + 3 * Keys); x31.Store(p + 3 * Keys + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Softmax(int* visible, float* m, float* lv, float* p, float* alpha)
    {
        bool masked = (visible[0] & visible[1] & visible[2] & visible[3]) != Keys;
        var diff = Vector128<float>.Zero;
        for (int r = 0; r < 4; r++)
        {
            float* row = p + r * Keys;
            if (masked)
                MaskRow(row, visible[r]);
            var mx = Vector256.Max(Vector256.Max(Vector256.Load(row), Vector256.Load(row + 8)), Vector256.Max(Vector256.Load(row + 16), Vector256.Load(row + 24)));
            var h = Vector128.Max(mx.GetLower(), mx.GetUpper());
            h = Vector128.Max(h, Sse.Shuffle(h, h, 0b01001110));
            h = Vector128.Max(h, Sse.Shuffle(h, h, 0b10110001));
            float mOld = m[r], mNew = MathF.Max(mOld, h.ToScalar());
            m[r] = mNew;
            diff = diff.WithElement(r, float.IsNegativeInfinity(mNew) ? 0f : mOld - mNew);
        }
        TileMath.Exp(diff.ToVector256()).GetLower().Store(alpha);
        for (int r = 0; r < 4; r++)
        {
            float* row = p + r * Keys, l = lv + r * 16;
            var sh = Vector256.Create(float.IsNegativeInfinity(m[r]) ? 0f : m[r]);
            var e0 = TileMath.Exp(Vector256.Load(row) - sh);
            var e1 = TileMath.Exp(Vector256.Load(row + 8) - sh);
            var e2 = TileMath.Exp(Vector256.Load(row + 16) - sh);
            var e3 = TileMath.Exp(Vector256.Load(row + 24) - sh);
            e0.Store(row); e1.Store(row + 8); e2.Store(row + 16); e3.Store(row + 24);
            // The running sums use the first 8 of the row's 16 slots.
            Fma.MultiplyAdd(Vector256.Load(l), Vector256.Create(alpha[r]), (e0 + e1) + (e2 + e3)).Store(l);
        }
    }

    // Scores at or past the row's visible count become −∞ (the exponential then gives exactly 0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MaskRow(float* row, int visible)
    {
        var limit = Vector256.Create((float)visible);
        var ninf = Vector256.Create(float.NegativeInfinity);
        for (int c = 0; c < Keys; c += 8)
        {
            var keep = Vector256.LessThan(Iota + Vector256.Create((float)c), limit);
            Vector256.ConditionalSelect(keep, Vector256.Load(row + c), ninf).Store(row + c);
        }
    }

    /// <summary>
    /// acc (4 × dp) ← alpha ∘ acc + P (4 × keys, leading dimension 32) · V (keys × dp, leading dimension
    /// <paramref name="ldv"/>); dp a multiple of 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(float* p, int keys, float* v, int ldv, float* acc, int ldacc, int dp, float* alpha)
    {
        float* p0 = p, p1 = p + Keys, p2 = p + 2 * Keys, p3 = p + 3 * Keys;
        for (int j = 0; j < dp; j += 16)
        {
            float* c0 = acc + j, c1 = c0 + ldacc, c2 = c1 + ldacc, c3 = c2 + ldacc;
            var al = Vector256.Create(alpha[0]);
            var x00 = Vector256.Load(c0) * al; var x01 = Vector256.Load(c0 + 8) * al;
            al = Vector256.Create(alpha[1]);
            var x10 = Vector256.Load(c1) * al; var x11 = Vector256.Load(c1 + 8) * al;
            al = Vector256.Create(alpha[2]);
            var x20 = Vector256.Load(c2) * al; var x21 = Vector256.Load(c2 + 8) * al;
            al = Vector256.Create(alpha[3]);
            var x30 = Vector256.Load(c3) * al; var x31 = Vector256.Load(c3 + 8) * al;
            float* bp = v + j;
            for (int c = 0; c < keys; c++, bp += ldv)
            {
                var b0 = Vector256.Load(bp); var b1 = Vector256.Load(bp + 8);
                var s = Vector256.Create(p0[c]);
                x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
                s = Vector256.Create(p1[c]);
                x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
                s = Vector256.Create(p2[c]);
                x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
                s = Vector256.Create(p3[c]);
                x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
            }
            x00.Store(c0); x01.Store(c0 + 8);
            x10.Store(c1); x11.Store(c1 + 8);
            x20.Store(c2); x21.Store(c2 + 8);
            x30.Store(c3); x31.Store(c3 + 8);
        }
    }
}
