using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Microsoft.ML.Hazy.Kernels;

/// <summary>
/// The vector primitives of the attention kernel: a register-tiled GEMM micro-kernel and the row operations of the
/// online softmax, each for AVX-512, AVX2 + FMA and plain scalar code.
/// </summary>
internal static unsafe class TileMath
{
    /// <summary>The widest instruction set this machine runs well.</summary>
    public static SimdLevel Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdLevel.Avx512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? SimdLevel.Avx2
        : SimdLevel.Scalar;

    public static SimdLevel Resolve(SimdLevel? requested) =>
        requested is { } r && r < Best ? r : Best;

    // C (m×n) (+)= A (m×k) · B (k×n), row-major with leading dimensions; m a multiple of 4, n a multiple of 16. The
    // fused forward step calls it for one 4-row tile at a time.
    public static void Gemm(SimdLevel isa, float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate) =>
        Gemm(isa, a, lda, 1, b, ldb, c, ldc, m, n, k, accumulate);

    // C (m×n) (+)= Aᵀ · B where A is stored k×m (row-major, leading dimension lda): no transposed copy needed.
    public static void GemmTransposedA(SimdLevel isa, float* a, int lda, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate) =>
        Gemm(isa, a, 1, lda, b, ldb, c, ldc, m, n, k, accumulate);

    // A's element (i, p) is at a[i·rowStride + p·colStride].
    private static void Gemm(SimdLevel isa, float* a, int rowStride, int colStride, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        if (isa == SimdLevel.Avx512)
            Gemm512(a, rowStride, colStride, b, ldb, c, ldc, m, n, k, accumulate);
        else if (isa == SimdLevel.Avx2)
            Gemm256(a, rowStride, colStride, b, ldb, c, ldc, m, n, k, accumulate);
        else
            GemmScalar(a, rowStride, colStride, b, ldb, c, ldc, m, n, k, accumulate);
    }

    private static void GemmScalar(float* a, int lda, int cs, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i++)
        {
            float* ci = c + (long)i * ldc;
            if (!accumulate)
                new Span<float>(ci, n).Clear();
            for (int p = 0; p < k; p++)
            {
                float s = a[(long)i * lda + (long)p * cs];
                float* bp = b + (long)p * ldb;
                for (int j = 0; j < n; j++)
                    ci[j] += s * bp[j];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemm512(float* a, int lda, int cs, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i += 4)
        {
            float* a0 = a + (long)i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            float* c0 = c + (long)i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            int j = 0;
            for (; j + 64 <= n; j += 64)
            {
                Vector512<float> x00 = L(accumulate, c0 + j), x01 = L(accumulate, c0 + j + 16), x02 = L(accumulate, c0 + j + 32), x03 = L(accumulate, c0 + j + 48);
                Vector512<float> x10 = L(accumulate, c1 + j), x11 = L(accumulate, c1 + j + 16), x12 = L(accumulate, c1 + j + 32), x13 = L(accumulate, c1 + j + 48);
                Vector512<float> x20 = L(accumulate, c2 + j), x21 = L(accumulate, c2 + j + 16), x22 = L(accumulate, c2 + j + 32), x23 = L(accumulate, c2 + j + 48);
                Vector512<float> x30 = L(accumulate, c3 + j), x31 = L(accumulate, c3 + j + 16), x32 = L(accumulate, c3 + j + 32), x33 = L(accumulate, c3 + j + 48);
                float* bp = b + j;
                for (long p = 0, ap = 0; p < k; p++, bp += ldb, ap += cs)
                {
                    var b0 = Vector512.Load(bp); var b1 = Vector512.Load(bp + 16); var b2 = Vector512.Load(bp + 32); var b3 = Vector512.Load(bp + 48);
                    var s = Vector512.Create(a0[ap]);
                    x00 = Vector512.FusedMultiplyAdd(s, b0, x00); x01 = Vector512.FusedMultiplyAdd(s, b1, x01); x02 = Vector512.FusedMultiplyAdd(s, b2, x02); x03 = Vector512.FusedMultiplyAdd(s, b3, x03);
                    s = Vector512.Create(a1[ap]);
                    x10 = Vector512.FusedMultiplyAdd(s, b0, x10); x11 = Vector512.FusedMultiplyAdd(s, b1, x11); x12 = Vector512.FusedMultiplyAdd(s, b2, x12); x13 = Vector512.FusedMultiplyAdd(s, b3, x13);
                    s = Vector512.Create(a2[ap]);
                    x20 = Vector512.FusedMultiplyAdd(s, b0, x20); x21 = Vector512.FusedMultiplyAdd(s, b1, x21); x22 = Vector512.FusedMultiplyAdd(s, b2, x22); x23 = Vector512.FusedMultiplyAdd(s, b3, x23);
                    s = Vector512.Create(a3[ap]);
                    x30 = Vector512.FusedMultiplyAdd(s, b0, x30); x31 = Vector512.FusedMultiplyAdd(s, b1, x31); x32 = Vector512.FusedMultiplyAdd(s, b2, x32); x33 = Vector512.FusedMultiplyAdd(s, b3, x33);
                }
                x00.Store(c0 + j); x01.Store(c0 + j + 16); x02.Store(c0 + j + 32); x03.Store(c0 + j + 48);
                x10.Store(c1 + j); x11.Store(c1 + j + 16); x12.Store(c1 + j + 32); x13.Store(c1 + j + 48);
                x20.Store(c2 + j); x21.Store(c2 + j + 16); x22.Store(c2 + j + 32); x23.Store(c2 + j + 48);
                x30.Store(c3 + j); x31.Store(c3 + j + 16); x32.Store(c3 + j + 32); x33.Store(c3 + j + 48);
            }
            for (; j < n; j += 16)
            {
                Vector512<float> x0 = L(accumulate, c0 + j), x1 = L(accumulate, c1 + j), x2 = L(accumulate, c2 + j), x3 = L(accumulate, c3 + j);
                float* bp = b + j;
                for (long p = 0, ap = 0; p < k; p++, bp += ldb, ap += cs)
                {
                    var bv = Vector512.Load(bp);
                    x0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[ap]), bv, x0);
                    x1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[ap]), bv, x1);
                    x2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[ap]), bv, x2);
                    x3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[ap]), bv, x3);
                }
                x0.Store(c0 + j); x1.Store(c1 + j); x2.Store(c2 + j); x3.Store(c3 + j);
            }
        }
    }

    // 4 × 16 register tiles (8 accumulators, 2 loads, 1 broadcast): AVX2 has 16 ymm registers, and a 4 × 32 tile's
    // 21 live values would spill.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemm256(float* a, int lda, int cs, float* b, int ldb, float* c, int ldc, int m, int n, int k, bool accumulate)
    {
        for (int i = 0; i < m; i += 4)
        {
            float* a0 = a + (long)i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            float* c0 = c + (long)i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            for (int j = 0; j < n; j += 16)
            {
                Vector256<float> x00 = L2(accumulate, c0 + j), x01 = L2(accumulate, c0 + j + 8), x10 = L2(accumulate, c1 + j), x11 = L2(accumulate, c1 + j + 8);
                Vector256<float> x20 = L2(accumulate, c2 + j), x21 = L2(accumulate, c2 + j + 8), x30 = L2(accumulate, c3 + j), x31 = L2(accumulate, c3 + j + 8);
                float* bp = b + j;
                for (long p = 0, ap = 0; p < k; p++, bp += ldb, ap += cs)
                {
                    var b0 = Vector256.Load(bp); var b1 = Vector256.Load(bp + 8);
                    var s = Vector256.Create(a0[ap]); x00 = Fma.MultiplyAdd(s, b0, x00); x01 = Fma.MultiplyAdd(s, b1, x01);
                    s = Vector256.Create(a1[ap]); x10 = Fma.MultiplyAdd(s, b0, x10); x11 = Fma.MultiplyAdd(s, b1, x11);
                    s = Vector256.Create(a2[ap]); x20 = Fma.MultiplyAdd(s, b0, x20); x21 = Fma.MultiplyAdd(s, b1, x21);
                    s = Vector256.Create(a3[ap]); x30 = Fma.MultiplyAdd(s, b0, x30); x31 = Fma.MultiplyAdd(s, b1, x31);
                }
                x00.Store(c0 + j); x01.Store(c0 + j + 8); x10.Store(c1 + j); x11.Store(c1 + j + 8);
                x20.Store(c2 + j); x21.Store(c2 + j + 8); x30.Store(c3 + j); x31.Store(c3 + j + 8);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> L(bool accumulate, float* p) => accumulate ? Vector512.Load(p) : Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> L2(bool accumulate, float* p) => accumulate ? Vector256.Load(p) : Vector256<float>.Zero;

    /// <summary>max(x[0..n)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(SimdLevel isa, float* x, int n)
    {
        int i = 0;
        float m = float.NegativeInfinity;
        if (isa == SimdLevel.Avx512 && n >= 16)
        {
            var v = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16)
                v = Vector512.Max(v, Vector512.Load(x + i));
            m = MaxOf(Vector256.Max(v.GetLower(), v.GetUpper()));
        }
        else if (isa == SimdLevel.Avx2 && n >= 8)
        {
            var v = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8)
                v = Vector256.Max(v, Vector256.Load(x + i));
            m = MaxOf(v);
        }
        for (; i < n; i++)
            m = MathF.Max(m, x[i]);
        return m;
    }

    private static float MaxOf(Vector256<float> v)
    {
        var h = Vector128.Max(v.GetLower(), v.GetUpper());
        return MathF.Max(MathF.Max(h[0], h[1]), MathF.Max(h[2], h[3]));
    }

    // x ← exp(x − shift) in place; returns Σ x.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShifted(SimdLevel isa, float* x, int n, float shift)
    {
        int i = 0;
        float sum = 0;
        if (isa == SimdLevel.Avx512)
        {
            var sh = Vector512.Create(shift);
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var e = Exp(Vector512.Load(x + i) - sh);
                e.Store(x + i);
                acc += e;
            }
            sum = Vector512.Sum(acc);
        }
        else if (isa == SimdLevel.Avx2)
        {
            var sh = Vector256.Create(shift);
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var e = Exp(Vector256.Load(x + i) - sh);
                e.Store(x + i);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(x[i] - shift);
            x[i] = e;
            sum += e;
        }
        return sum;
    }

    // exp in float, within 1 ulp of the float-rounded exact value on the softmax range (x ≤ 0): n = round(x·log₂e),
    // r = x − n·ln 2 in two parts (Cody–Waite, |r| ≤ ln 2 / 2), exp r by its degree-7 Taylor polynomial (truncation
    // below 2⁻²⁵), times 2ⁿ. Inputs are clamped to [−104, 88.8]: below, the result is 0; above, +∞. About 13
    // instructions per vector, where the BCL's Vector512.Exp widens to double (about 3× slower here).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-104f)), Vector512.Create(88.8f));
        var n = Avx512F.RoundScale(x * Vector512.Create(Log2E), 0x08);
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(C7), r, Vector512.Create(C6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        return Avx512F.Scale(p, n);
    }

    /// <summary>The AVX2 form of <see cref="Exp(Vector512{float})"/>: 2ⁿ built in the exponent bits (two factors, so that
    /// e^88.5 does not overflow); below −87.3 the result is 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var under = Vector256.LessThan(x, Vector256.Create(-87.3f));
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.3f)), Vector256.Create(88.8f));
        var n = Avx.RoundToNearestInteger(x * Vector256.Create(Log2E));
        var r = Fma.MultiplyAdd(n, Vector256.Create(-Ln2Hi), x);
        r = Fma.MultiplyAdd(n, Vector256.Create(-Ln2Lo), r);
        var p = Fma.MultiplyAdd(Vector256.Create(C7), r, Vector256.Create(C6));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(C5));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(C4));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(C3));
        p = Fma.MultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Fma.MultiplyAdd(p, r, Vector256<float>.One);
        p = Fma.MultiplyAdd(p, r, Vector256<float>.One);
        // 2ⁿ as 2^⌊n/2⌋ · 2^(n − ⌊n/2⌋), each factor a normal float over the whole clamped range (n from −126 to 128).
        var ni = Vector256.ConvertToInt32(n);
        var half = Vector256.ShiftRightArithmetic(ni, 1);
        var bias = Vector256.Create(127);
        var s1 = Vector256.ShiftLeft(half + bias, 23).AsSingle();
        var s2 = Vector256.ShiftLeft(ni - half + bias, 23).AsSingle();
        return Vector256.AndNot(p * s1 * s2, under);
    }

    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693145751953125f; // ln 2 to 16 significant bits, so n·Ln2Hi is exact
    private const float Ln2Lo = 1.4286068202862268e-6f;
    private const float C3 = 1f / 6, C4 = 1f / 24, C5 = 1f / 120, C6 = 1f / 720, C7 = 1f / 5040;

    /// <summary>y ← y + x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddTo(SimdLevel isa, float* y, float* x, int n)
    {
        int i = 0;
        if (isa == SimdLevel.Avx512)
        {
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(y + i) + Vector512.Load(x + i)).Store(y + i);
        }
        else if (isa == SimdLevel.Avx2)
        {
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(y + i) + Vector256.Load(x + i)).Store(y + i);
        }
        for (; i < n; i++)
            y[i] += x[i];
    }

    /// <summary>x ← a · x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(SimdLevel isa, float* x, int n, float a)
    {
        int i = 0;
        if (isa == SimdLevel.Avx512)
        {
            var av = Vector512.Create(a);
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(x + i) * av).Store(x + i);
        }
        else if (isa == SimdLevel.Avx2)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(x + i) * av).Store(x + i);
        }
        for (; i < n; i++)
            x[i] *= a;
    }

    // dS = P ∘ (dP − D), in place in dP (no dropout factor).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftmaxGradient(SimdLevel isa, float* p, float* dp, int n, float d)
    {
        int i = 0;
        if (isa == SimdLevel.Avx512)
        {
            var dv = Vector512.Create(d);
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(p + i) * (Vector512.Load(dp + i) - dv)).Store(dp + i);
        }
        else if (isa == SimdLevel.Avx2)
        {
            var dv = Vector256.Create(d);
            for (; i + 8 <= n; i += 8)
                (Vector256.Load(p + i) * (Vector256.Load(dp + i) - dv)).Store(dp + i);
        }
        for (; i < n; i++)
            dp[i] = p[i] * (dp[i] - d);
    }

    /// <summary>Σ x·y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(SimdLevel isa, float* x, float* y, int n)
    {
        int i = 0;
        float sum = 0;
        if (isa == SimdLevel.Avx512)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), acc);
            sum = Vector512.Sum(acc);
        }
        else if (isa == SimdLevel.Avx2)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
                acc = Fma.MultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), acc);
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++)
            sum += x[i] * y[i];
        return sum;
    }
}
