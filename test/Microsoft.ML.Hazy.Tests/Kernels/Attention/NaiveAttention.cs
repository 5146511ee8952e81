using System.Numerics;
using Microsoft.ML.Hazy.Kernels;
using Microsoft.ML.Hazy.Kernels.Attention;

namespace Microsoft.ML.Hazy.Tests.Kernels.Attention;

/// <summary>
/// Textbook attention, S = τQKᵀ with masked entries −∞, P = softmax(S), O = (P ∘ Z)V, and its gradient, in any
/// floating type: double is the reference, float the "naive fp32" peer whose error sets the tolerance.
/// </summary>
internal static class NaiveAttention
{
    public sealed record Result<T>(T[] O, T[] Lse, T[] Dq, T[] Dk, T[] Dv);

    public static bool Visible(AttentionShape s, FlashAttentionOptions options, int b, int i, int j)
    {
        if (options.KeyLengths is { } lens && j >= lens[b])
            return false;
        if (options.Causal && j > i + s.KeyLength - s.QueryLength)
            return false;
        if (options.BlockMask is { } m && !m[i / m.QueryBlockSize, j / m.KeyBlockSize])
            return false;
        return true;
    }

    public static Result<T> Run<T>(AttentionShape s, float[] qf, float[] kf, float[] vf, float[]? dOf, FlashAttentionOptions options)
        where T : IFloatingPointIeee754<T>
    {
        T[] q = Convert<T>(qf), k = Convert<T>(kf), v = Convert<T>(vf);
        T[]? dO = dOf is null ? null : Convert<T>(dOf);
        int d = s.HeadDim, lq = s.QueryLength, lk = s.KeyLength;
        T tau = T.CreateChecked(options.Scale ?? 1.0 / Math.Sqrt(d));
        double p = options.DropoutProbability;
        T keep = T.CreateChecked(1 / (1 - p));
        var o = new T[s.QueryElements];
        var lse = new T[s.RowCount];
        var dq = new T[s.QueryElements];
        var dk = new T[s.KeyElements];
        var dv = new T[s.KeyElements];
        var sc = new T[lk];
        var pr = new T[lk];
        var z = new T[lk];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
            {
                int bh = b * s.Heads + h;
                long qb = (long)bh * lq * d, kb = (long)bh * lk * d;
                for (int i = 0; i < lq; i++)
                {
                    T max = T.NegativeInfinity;
                    for (int j = 0; j < lk; j++)
                    {
                        if (!Visible(s, options, b, i, j))
                        {
                            sc[j] = T.NegativeInfinity;
                            continue;
                        }
                        T acc = T.Zero;
                        for (int c = 0; c < d; c++)
                            acc += (q[qb + (long)i * d + c]) * (k[kb + (long)j * d + c]);
                        sc[j] = tau * acc;
                        max = T.Max(max, sc[j]);
                    }
                    T sum = T.Zero;
                    for (int j = 0; j < lk; j++)
                    {
                        pr[j] = T.IsNegativeInfinity(sc[j]) ? T.Zero : T.Exp(sc[j] - max);
                        sum += pr[j];
                    }
                    lse[(long)bh * lq + i] = sum > T.Zero ? max + T.Log(sum) : T.NegativeInfinity;
                    for (int j = 0; j < lk; j++)
                    {
                        pr[j] = sum > T.Zero ? pr[j] / sum : T.Zero;
                        z[j] = p > 0 ? (FlashAttentionKernel.DropoutKeeps(options.DropoutSeed, bh, i, j, p) ? keep : T.Zero) : T.One;
                    }
                    for (int c = 0; c < d; c++)
                    {
                        T acc = T.Zero;
                        for (int j = 0; j < lk; j++)
                            acc += pr[j] * z[j] * (v[kb + (long)j * d + c]);
                        o[qb + (long)i * d + c] = acc;
                    }
                    if (dO is null)
                        continue;
                    T dsum = T.Zero;
                    for (int c = 0; c < d; c++)
                        dsum += (dO[qb + (long)i * d + c]) * o[qb + (long)i * d + c];
                    for (int j = 0; j < lk; j++)
                    {
                        if (pr[j] == T.Zero)
                            continue;
                        T dpj = T.Zero;
                        for (int c = 0; c < d; c++)
                        {
                            T g = (dO[qb + (long)i * d + c]);
                            dv[kb + (long)j * d + c] += pr[j] * z[j] * g;
                            dpj += g * (v[kb + (long)j * d + c]);
                        }
                        T ds = pr[j] * (dpj * z[j] - dsum);
                        for (int c = 0; c < d; c++)
                        {
                            dq[qb + (long)i * d + c] += tau * ds * (k[kb + (long)j * d + c]);
                            dk[kb + (long)j * d + c] += tau * ds * (q[qb + (long)i * d + c]);
                        }
                    }
                }
            }
        return new Result<T>(o, lse, dq, dk, dv);
    }

    private static T[] Convert<T>(float[] x) where T : IFloatingPointIeee754<T> => x.Select(T.CreateChecked).ToArray();

    public static double MaxError<T>(float[] actual, T[] reference) where T : IFloatingPointIeee754<T>
    {
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double r = double.CreateChecked(reference[i]), a = actual[i];
            if (double.IsNegativeInfinity(r) && double.IsNegativeInfinity(a))
                continue;
            worst = Math.Max(worst, Math.Abs(a - r));
        }
        return worst;
    }

    public static float[] Random(Random rng, long n, double scale = 1)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++)
            x[i] = (float)(scale * (rng.NextDouble() * 2 - 1) * 1.7320508);
        return x;
    }
}
