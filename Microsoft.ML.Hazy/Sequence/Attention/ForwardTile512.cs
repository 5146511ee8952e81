using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Microsoft.ML.Hazy.Sequence.Attention;

/// <summary>
/// The fused AVX-512 step of the forward pass: four query rows against up to 64 keys. The scores come out of a
/// 4 × 64 register tile (16 zmm accumulators), the online-softmax update runs on that 1 KiB tile while it is in L1,
/// and the 4 × d output accumulator is rescaled as it is loaded for P·V, so nothing of the step leaves the core's
/// L1 and no pass over the score rows is separate. Per step that is 2 · 4 · 64 · d fused multiply-adds against 16
/// vector exponentials and four horizontal maxima.
/// </summary>
internal static unsafe class ForwardTile512
{
    /// <summary>Keys per step (a strip): the width of the score register tile.</summary>
    public const int Keys = 64;

    private static readonly Vector512<float> Iota = Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>
    /// Scores S = Q₄ · Kᵀ (τ already folded into the packed keys) for four rows and one strip of keys, then the online-softmax step: m, the
    /// running row maxima, and lv, 16 partial sums per row, are updated; p receives the 4 × 64 unnormalised
    /// probabilities and alpha the factor exp(m_old − m_new) by which each row's accumulator must be rescaled.
    /// Row r sees its first visible[r] keys; the rest (and any key past the tile) get probability 0.
    /// </summary>
    /// <param name="q">Four query rows.</param>
    /// <param name="ldq">The leading dimension of <paramref name="q"/>.</param>
    /// <param name="d">The head size: the length of the dot products.</param>
    /// <param name="kt">τKᵀ: d rows of at least 64 columns.</param>
    /// <param name="ldk">The leading dimension of <paramref name="kt"/>.</param>
    /// <param name="visible">Four counts: the keys of the strip each row sees (a prefix).</param>
    /// <param name="m">The four running row maxima (−∞ before the first key).</param>
    /// <param name="lv">4 × 16 running partial sums of the probabilities.</param>
    /// <param name="p">4 × 64 output: the step's unnormalised probabilities.</param>
    /// <param name="alpha">4 outputs: exp(m_old − m_new).</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores(float* q, int ldq, int d, float* kt, int ldk, int* visible, float* m, float* lv, float* p, float* alpha)
    {
        ScoreTile(q, ldq, d, kt, ldk, p);
        Softmax(visible, m, lv, p, alpha);
    }

    // S (4 × 64) = Q₄ · Kᵀ in 16 zmm accumulators: per key column 4 loads and 4 broadcasts feed 16 FMAs.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreTile(float* q, int ldq, int d, float* kt, int ldk, float* p)
    {
        float* a0 = q, a1 = q + ldq, a2 = a1 + ldq, a3 = a2 + ldq;
        Vector512<float> x00 = default, x01 = default, x02 = default, x03 = default, x10 = default, x11 = default, x12 = default, x13 = default;
        Vector512<float> x20 = default, x21 = default, x22 = default, x23 = default, x30 = default, x31 = default, x32 = default, x33 = default;
        float* bp = kt;
        for (int c = 0; c < d; c++, bp += ldk)
        {
            var b0 = Vector512.Load(bp); var b1 = Vector512.Load(bp + 16); var b2 = Vector512.Load(bp + 32); var b3 = Vector512.Load(bp + 48);
            var s = Vector512.Create(a0[c]);
            x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01); x02 = Vector512.FusedMultiplyAdd(s, b2, x02); x03 = Vector512.FusedMultiplyAdd(s, b3, x03);
            s = Vector512.Create(a1[c]);
            x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11); x12 = Vector512.FusedMultiplyAdd(s, b2, x12); x13 = Vector512.FusedMultiplyAdd(s, b3, x13);
            s = Vector512.Create(a2[c]);
            x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21); x22 = Vector512.FusedMultiplyAdd(s, b2, x22); x23 = Vector512.FusedMultiplyAdd(s, b3, x23);
            s = Vector512.Create(a3[c]);
            x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31); x32 = Vector512.FusedMultiplyAdd(s, b2, x32); x33 = Vector512.FusedMultiplyAdd(s, b3, x33);
        }
        x00.Store(p); x01.Store(p + 16); x02.Store(p + 32); x03.Store(p + 48);
        x10.Store(p + 64); x11.Store(p + 80); x12.Store(p + 96); x13.Store(p + 112);
        x20.Store(p + 128); x21.Store(p + 144); x22.Store(p + 160); x23.Store(p + 176);
        x30.Store(p + 192); x31.Store(p + 208); x32.Store(p + 224); x33.Store(p + 240);
    }

    // The online-softmax step on the four score rows in p (4 × 64).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Softmax(int* visible, float* m, float* lv, float* p, float* alpha)
    {
        bool masked = (visible[0] & visible[1] & visible[2] & visible[3]) != Keys;
        if (!masked)
        {
            SoftmaxOpen(m, lv, p, alpha);
            return;
        }
        // New maxima first, so the four rescaling factors take one vector exponential.
        var diff = Vector128<float>.Zero;
        for (int r = 0; r < 4; r++)
        {
            float* row = p + r * Keys;
            if (masked)
                MaskRow(row, visible[r]);
            var mx = Vector512.Max(Vector512.Max(Vector512.Load(row), Vector512.Load(row + 16)), Vector512.Max(Vector512.Load(row + 32), Vector512.Load(row + 48)));
            float mOld = m[r], mNew = MathF.Max(mOld, HorizontalMax(mx));
            m[r] = mNew;
            // A row that has seen no key yet keeps m = −∞, a zero accumulator and factor 1 (never ∞ − ∞).
            diff = diff.WithElement(r, float.IsNegativeInfinity(mNew) ? 0f : mOld - mNew);
        }
        TileMath.Exp(diff.ToVector256Unsafe().ToVector512Unsafe()).GetLower().GetLower().Store(alpha);
        for (int r = 0; r < 4; r++)
        {
            float* row = p + r * Keys, l = lv + r * 16;
            float shift = float.IsNegativeInfinity(m[r]) ? 0f : m[r];
            var sh = Vector512.Create(shift);
            // −∞ scores (masked) come out of the exponential as exactly 0.
            var e0 = TileMath.Exp(Vector512.Load(row) - sh);
            var e1 = TileMath.Exp(Vector512.Load(row + 16) - sh);
            var e2 = TileMath.Exp(Vector512.Load(row + 32) - sh);
            var e3 = TileMath.Exp(Vector512.Load(row + 48) - sh);
            e0.Store(row); e1.Store(row + 16); e2.Store(row + 32); e3.Store(row + 48);
            Vector512.FusedMultiplyAdd(Vector512.Load(l), Vector512.Create(alpha[r]), (e0 + e1) + (e2 + e3)).Store(l);
        }
    }

    // Every score visible (so every maximum finite): the four rows' maxima are reduced in vector registers, side by side
    // so that their latency chains overlap, and a row's rescaling factor is computed only when its maximum moved,
    // which after the first strips is rare.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SoftmaxOpen(float* m, float* lv, float* p, float* alpha)
    {
        var t0 = AllLanesMax(RowMax(p));
        var t1 = AllLanesMax(RowMax(p + Keys));
        var t2 = AllLanesMax(RowMax(p + 2 * Keys));
        var t3 = AllLanesMax(RowMax(p + 3 * Keys));
        OpenRow(p, m, lv, alpha, t0, 0);
        OpenRow(p + Keys, m, lv, alpha, t1, 1);
        OpenRow(p + 2 * Keys, m, lv, alpha, t2, 2);
        OpenRow(p + 3 * Keys, m, lv, alpha, t3, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowMax(float* row) =>
        Vector512.Max(Vector512.Max(Vector512.Load(row), Vector512.Load(row + 16)), Vector512.Max(Vector512.Load(row + 32), Vector512.Load(row + 48)));

    // The maximum of the 16 lanes, in every lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> AllLanesMax(Vector512<float> v)
    {
        v = Vector512.Max(v, Avx512F.Shuffle4x128(v, v, 0b01_00_11_10));
        v = Vector512.Max(v, Avx512F.Shuffle4x128(v, v, 0b10_11_00_01));
        v = Vector512.Max(v, Avx512F.Permute4x32(v, 0b01_00_11_10));
        return Vector512.Max(v, Avx512F.Permute4x32(v, 0b10_11_00_01));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OpenRow(float* row, float* m, float* lv, float* alpha, Vector512<float> tileMax, int r)
    {
        float mOld = m[r];
        var mNew = Vector512.Max(tileMax, Vector512.Create(mOld));
        float mn = mNew.ToScalar();
        // exp(m_old − m_new): 1 when the maximum stayed, 0 from m_old = −∞ (the first strip).
        float a = mn > mOld ? TileMath.Exp(Vector512.Create(mOld - mn)).ToScalar() : 1f;
        m[r] = mn;
        alpha[r] = a;
        var e0 = TileMath.Exp(Vector512.Load(row) - mNew);
        var e1 = TileMath.Exp(Vector512.Load(row + 16) - mNew);
        var e2 = TileMath.Exp(Vector512.Load(row + 32) - mNew);
        var e3 = TileMath.Exp(Vector512.Load(row + 48) - mNew);
        e0.Store(row); e1.Store(row + 16); e2.Store(row + 32); e3.Store(row + 48);
        float* l = lv + r * 16;
        Vector512.FusedMultiplyAdd(Vector512.Load(l), Vector512.Create(a), (e0 + e1) + (e2 + e3)).Store(l);
    }

    // Scores at or past the row's visible count become −∞.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MaskRow(float* row, int visible)
    {
        var limit = Vector512.Create((float)visible);
        var ninf = Vector512.Create(float.NegativeInfinity);
        for (int c = 0; c < Keys; c += 16)
        {
            var keep = Vector512.LessThan(Iota + Vector512.Create((float)c), limit);
            Vector512.ConditionalSelect(keep, Vector512.Load(row + c), ninf).Store(row + c);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector512<float> v)
    {
        var h = Vector256.Max(v.GetLower(), v.GetUpper());
        var g = Vector128.Max(h.GetLower(), h.GetUpper());
        g = Vector128.Max(g, Sse.Shuffle(g, g, 0b01001110));
        g = Vector128.Max(g, Sse.Shuffle(g, g, 0b10110001));
        return g.ToScalar();
    }

    /// <summary>
    /// acc (4 × dp) ← alpha ∘ acc + P (4 × keys, leading dimension 64) · V (keys × dp, leading dimension
    /// <paramref name="ldv"/>); dp a multiple of 16.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate(float* p, int keys, float* v, int ldv, float* acc, int ldacc, int dp, float* alpha)
    {
        var al0 = Vector512.Create(alpha[0]); var al1 = Vector512.Create(alpha[1]);
        var al2 = Vector512.Create(alpha[2]); var al3 = Vector512.Create(alpha[3]);
        float* p0 = p, p1 = p + Keys, p2 = p + 2 * Keys, p3 = p + 3 * Keys;
        int j = 0;
        for (; j + 64 <= dp; j += 64)
        {
            float* c0 = acc + j, c1 = c0 + ldacc, c2 = c1 + ldacc, c3 = c2 + ldacc;
            var x00 = Vector512.Load(c0) * al0; var x01 = Vector512.Load(c0 + 16) * al0; var x02 = Vector512.Load(c0 + 32) * al0; var x03 = Vector512.Load(c0 + 48) * al0;
            var x10 = Vector512.Load(c1) * al1; var x11 = Vector512.Load(c1 + 16) * al1; var x12 = Vector512.Load(c1 + 32) * al1; var x13 = Vector512.Load(c1 + 48) * al1;
            var x20 = Vector512.Load(c2) * al2; var x21 = Vector512.Load(c2 + 16) * al2; var x22 = Vector512.Load(c2 + 32) * al2; var x23 = Vector512.Load(c2 + 48) * al2;
            var x30 = Vector512.Load(c3) * al3; var x31 = Vector512.Load(c3 + 16) * al3; var x32 = Vector512.Load(c3 + 32) * al3; var x33 = Vector512.Load(c3 + 48) * al3;
            float* bp = v + j;
            for (int c = 0; c < keys; c++, bp += ldv)
            {
                var b0 = Vector512.Load(bp); var b1 = Vector512.Load(bp + 16); var b2 = Vector512.Load(bp + 32); var b3 = Vector512.Load(bp + 48);
                var s = Vector512.Create(p0[c]);
                x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01); x02 = Vector512.FusedMultiplyAdd(s, b2, x02); x03 = Vector512.FusedMultiplyAdd(s, b3, x03);
                s = Vector512.Create(p1[c]);
                x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11); x12 = Vector512.FusedMultiplyAdd(s, b2, x12); x13 = Vector512.FusedMultiplyAdd(s, b3, x13);
                s = Vector512.Create(p2[c]);
                x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21); x22 = Vector512.FusedMultiplyAdd(s, b2, x22); x23 = Vector512.FusedMultiplyAdd(s, b3, x23);
                s = Vector512.Create(p3[c]);
                x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31); x32 = Vector512.FusedMultiplyAdd(s, b2, x32); x33 = Vector512.FusedMultiplyAdd(s, b3, x33);
            }
            x00.Store(c0); x01.Store(c0 + 16); x02.Store(c0 + 32); x03.Store(c0 + 48);
            x10.Store(c1); x11.Store(c1 + 16); x12.Store(c1 + 32); x13.Store(c1 + 48);
            x20.Store(c2); x21.Store(c2 + 16); x22.Store(c2 + 32); x23.Store(c2 + 48);
            x30.Store(c3); x31.Store(c3 + 16); x32.Store(c3 + 32); x33.Store(c3 + 48);
        }
        for (; j < dp; j += 16)
        {
            float* c0 = acc + j, c1 = c0 + ldacc, c2 = c1 + ldacc, c3 = c2 + ldacc;
            var x0 = Vector512.Load(c0) * al0; var x1 = Vector512.Load(c1) * al1; var x2 = Vector512.Load(c2) * al2; var x3 = Vector512.Load(c3) * al3;
            float* bp = v + j;
            for (int c = 0; c < keys; c++, bp += ldv)
            {
                var b = Vector512.Load(bp);
                x0 = Vector512.FusedMultiplyAdd(Vector512.Create(p0[c]), b, x0);
                x1 = Vector512.FusedMultiplyAdd(Vector512.Create(p1[c]), b, x1);
                x2 = Vector512.FusedMultiplyAdd(Vector512.Create(p2[c]), b, x2);
                x3 = Vector512.FusedMultiplyAdd(Vector512.Create(p3[c]), b, x3);
            }
            x0.Store(c0); x1.Store(c1); x2.Store(c2); x3.Store(c3);
        }
    }
}
