using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Microsoft.ML.Hazy.Kernels.Attention;

/// <summary>
/// The fused AVX-512 step of the forward pass: four query rows against a strip of 64 keys. The scores come out of the
/// GEMM micro-kernel's 4 × 64 register tile (16 zmm accumulators) into a 1 KiB tile, the online-softmax update runs on
/// it while it is in L1, and P·V accumulates into the four rows' accumulators (rescaled first only when a row's maximum
/// moved), so nothing of the step leaves the core's L1 and no pass over a score row is separate. Per step that is
/// 2 · 4 · 64 · d fused multiply-adds against 16 vector exponentials and four row maxima.
/// </summary>
/// <remarks>
/// It pays while the strip's τKᵀ and V (2 · 64 · d floats) fit in L1 beside the rows it serves, that is up to d = 64
/// (<see cref="Fits"/>). At d = 128 (64 KiB) the general path's 64 × 64 tiles measured 5–9 % faster, and with AVX2 a
/// 4 × 32 fused step measured the same as the general path, so both use the general path.
/// </remarks>
internal static unsafe class ForwardStep
{
    /// <summary>Keys per step (a strip), and the row stride of the probability tile.</summary>
    public const int Keys = 64;

    private static readonly Vector512<float> Iota16 = Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>Whether the fused step serves this instruction set and padded head size.</summary>
    public static bool Fits(SimdLevel isa, int paddedHeadDim) => isa == SimdLevel.Avx512 && paddedHeadDim <= 64;

    /// <summary>
    /// Scores S = Q₄ · Kᵀ (τ already folded into the packed keys) for four rows and one strip of keys, then the
    /// online-softmax step: m, the running row maxima, and lv, 16 partial sums per row, are updated; p receives the
    /// unnormalised probabilities and alpha the factor exp(m_old − m_new) by which each row's accumulator must be
    /// rescaled. Row r sees its first visible[r] keys; the rest (and any key past the tile) get probability 0.
    /// </summary>
    /// <param name="q">Four query rows.</param>
    /// <param name="ldq">The leading dimension of <paramref name="q"/>.</param>
    /// <param name="d">The head size: the length of the dot products.</param>
    /// <param name="kt">τKᵀ: d rows of at least <see cref="Keys"/> columns.</param>
    /// <param name="ldk">The leading dimension of <paramref name="kt"/>.</param>
    /// <param name="visible">Four counts: the keys of the strip each row sees (a prefix).</param>
    /// <param name="m">The four running row maxima (−∞ before the first key).</param>
    /// <param name="lv">4 × 16 running partial sums of the probabilities.</param>
    /// <param name="p">4 × 64 output: the step's unnormalised probabilities.</param>
    /// <param name="alpha">4 outputs: exp(m_old − m_new).</param>
    public static void Scores(float* q, int ldq, int d, float* kt, int ldk, int* visible, float* m, float* lv, float* p, float* alpha)
    {
        TileMath.Gemm(SimdLevel.Avx512, q, ldq, kt, ldk, p, Keys, 4, Keys, d, accumulate: false);
        Softmax(visible, m, lv, p, alpha);
    }

    /// <summary>
    /// acc (4 × dp) ← alpha ∘ acc + P (4 × keys, leading dimension 64) · V (keys × dp, leading
    /// dimension <paramref name="ldv"/>); dp a multiple of 16. A row whose factor is 1 is not rescaled.
    /// </summary>
    public static void Accumulate(float* p, int keys, float* v, int ldv, float* acc, int ldacc, int dp, float* alpha)
    {
        for (int r = 0; r < 4; r++)
            if (alpha[r] != 1f)
                TileMath.Scale(SimdLevel.Avx512, acc + r * ldacc, dp, alpha[r]);
        TileMath.Gemm(SimdLevel.Avx512, p, Keys, v, ldv, acc, ldacc, 4, dp, keys, accumulate: true);
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
            float mOld = m[r], mNew = MathF.Max(mOld, AllLanesMax(mx).ToScalar());
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
            var keep = Vector512.LessThan(Iota16 + Vector512.Create((float)c), limit);
            Vector512.ConditionalSelect(keep, Vector512.Load(row + c), ninf).Store(row + c);
        }
    }
}
