using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Sequence.S4D;

/// <summary>
/// The initial modes of each S4D initialization, in float64. This port writes A = −exp(a) + iω with ω ≥ 0,
/// the conjugate of the full reference's convention; since the kernel is 2·Re(·) and C is drawn from a
/// conjugation-symmetric distribution, both describe the same models.
/// </summary>
internal static class S4DInitializations
{
    /// <summary>Re A, Im A and B (null for B = 1) of the N/2 modes n = 0..N/2−1.</summary>
    public static (double[] RealA, double[] ImagA, Complex[]? B) Modes(S4DInitialization init, int stateSize)
    {
        int modes = stateSize / 2;
        var re = new double[modes];
        var im = new double[modes];
        Complex[]? b = null;
        switch (init)
        {
            case S4DInitialization.Lin:
                for (int n = 0; n < modes; n++)
                    (re[n], im[n]) = (-0.5, Math.PI * n);
                break;
            case S4DInitialization.Inv:
                for (int n = 0; n < modes; n++)
                    (re[n], im[n]) = (-0.5, stateSize / Math.PI * (stateSize / (2.0 * n + 1) - 1));
                break;
            case S4DInitialization.Real:
                for (int n = 0; n < modes; n++)
                    (re[n], im[n]) = (-(n + 1.0), 0);
                break;
            default:
                (im, b) = LegS(stateSize);
                Array.Fill(re, -0.5);
                break;
        }
        return (re, im, b);
    }

    /// <summary>
    /// HiPPO-LegS's normal part −I/2 + S with S_nk = −sign(n−k)·√((n+½)(k+½)): its eigenvalues −1/2 ± iω come from
    /// the Hermitian −iS; keep the N/2 with ω &gt; 0 (descending) and B = V*·B_LegS, B_LegS,k = √(2k+1), Im B clipped to ±2.
    /// </summary>
    public static (double[] Omega, Complex[] B) LegS(int stateSize)
    {
        var s = new double[stateSize * stateSize];
        for (int n = 0; n < stateSize; n++)
        {
            for (int k = 0; k < stateSize; k++)
                s[n * stateSize + k] = -Math.Sign(n - k) * Math.Sqrt((n + 0.5) * (k + 0.5));
        }
        using var scope = NewDisposeScope();
        var sTensor = tensor(s, new long[] { stateSize, stateSize }, ScalarType.Float64);
        var hermitian = complex(zeros_like(sTensor), -sTensor);
        var (values, vectors) = linalg.eigh(hermitian);
        var eig = values.data<double>().ToArray();
        var v = view_as_real(vectors.contiguous()).data<double>().ToArray();
        var order = Enumerable.Range(0, stateSize).Where(i => eig[i] > 0).OrderByDescending(i => eig[i]).ToArray();
        if (order.Length != stateSize / 2)
            throw new InvalidOperationException($"HiPPO-LegS of size {stateSize} gave {order.Length} positive frequencies; expected {stateSize / 2}.");
        var omega = order.Select(i => eig[i]).ToArray();
        var b = new Complex[order.Length];
        for (int m = 0; m < order.Length; m++)
        {
            Complex sum = 0;
            for (int k = 0; k < stateSize; k++)
            {
                int at = (k * stateSize + order[m]) * 2;
                sum += Complex.Conjugate(new Complex(v[at], v[at + 1])) * Math.Sqrt(2 * k + 1);
            }
            b[m] = new Complex(sum.Real, Math.Clamp(sum.Imaginary, -2, 2));
        }
        return (omega, b);
    }
}
