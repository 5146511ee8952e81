using Microsoft.ML.Hazy.Kernels.S4D;
using Microsoft.ML.Hazy.Sequence.S4D;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Kernels.S4D;

/// <summary>The S4D formulas against the research notes' golden vectors (§1.11, float64) and their invariants.</summary>
public sealed class S4DKernelTests
{
    // H = 1, N = 4 (two modes), Δ = 0.1, B = 1, C = [1, 1], L = 6.
    private static readonly double[] LinZoh = { 0.38701121, 0.35034119, 0.30098495, 0.24402016, 0.18480892, 0.12845668 };
    private static readonly double[] LinBilinear = { 0.38576660, 0.34987723, 0.30144490, 0.24536250, 0.18682839, 0.13082682 };
    private static readonly double[] InvZoh = { 0.38545605, 0.34032654, 0.27709322, 0.20499048, 0.13363836, 0.07166671 };
    private static readonly double[] InvBilinear = { 0.38361335, 0.33988259, 0.27833136, 0.20772144, 0.13727179, 0.07536059 };

    private static IEnumerable<TestCaseData> GoldenKernels()
    {
        yield return new TestCaseData(S4DInitialization.Lin, S4DDiscretization.Zoh, LinZoh).SetName("Lin ZOH");
        yield return new TestCaseData(S4DInitialization.Lin, S4DDiscretization.Bilinear, LinBilinear).SetName("Lin bilinear");
        yield return new TestCaseData(S4DInitialization.Inv, S4DDiscretization.Zoh, InvZoh).SetName("Inv ZOH");
        yield return new TestCaseData(S4DInitialization.Inv, S4DDiscretization.Bilinear, InvBilinear).SetName("Inv bilinear");
    }

    [TestCaseSource(nameof(GoldenKernels))]
    public void KernelMatchesGoldenVector(S4DInitialization init, S4DDiscretization disc, double[] expected)
    {
        using var scope = NewDisposeScope();
        var k = GoldenKernel(init, disc, 6, 0.1);
        Assert.That(k, Is.EqualTo(expected).Within(1e-8));
    }

    [TestCase(S4DInitialization.Lin, 4.098818)]
    [TestCase(S4DInitialization.Inv, 2.392281)]
    public void DcGainIsIndependentOfStepAndDiscretization(S4DInitialization init, double expected)
    {
        // Σ_ℓ K_ℓ = −2·Re Σ_n C_n B_n / A_n for any Δ and both discretizations; 3,000 steps of decay e^{−Δ/2·ℓ} leave < 1e-6.
        using var scope = NewDisposeScope();
        foreach (var disc in new[] { S4DDiscretization.Zoh, S4DDiscretization.Bilinear })
        {
            foreach (var dt in new[] { 0.05, 0.1, 0.3 })
                Assert.That(GoldenKernel(init, disc, 3000, dt).Sum(), Is.EqualTo(expected).Within(1e-6), $"{disc}, Δ = {dt}");
        }
    }

    [Test]
    public void FiniteLengthZohSumMatchesClosedForm()
    {
        // Σ_{ℓ<L} K_ℓ = −2·Re Σ_n C_n (1 − e^{ΔA_n L}) / A_n.
        using var scope = NewDisposeScope();
        var (re, im, _) = S4DInitializations.Modes(S4DInitialization.Inv, 4);
        double dt = 0.1;
        int length = 17;
        double expected = 0;
        for (int n = 0; n < re.Length; n++)
        {
            var a = new System.Numerics.Complex(re[n], im[n]);
            expected += -2 * ((1 - System.Numerics.Complex.Exp(dt * a * length)) / a).Real;
        }
        Assert.That(GoldenKernel(S4DInitialization.Inv, S4DDiscretization.Zoh, length, dt).Sum(), Is.EqualTo(expected).Within(1e-10));
    }

    [Test]
    public void OutputForGivenInputAndSkipMatchesGoldenVector()
    {
        using var scope = NewDisposeScope();
        double[] expected = { 0.88701121, 2.12436361, 3.66270095, 5.44505847, 7.41222490, 9.50784802 };
        var k = tensor(GoldenKernel(S4DInitialization.Lin, S4DDiscretization.Zoh, 6, 0.1), new long[] { 1, 1, 6 }, ScalarType.Float64);
        var u = arange(1, 7, ScalarType.Float64).reshape(1, 6, 1);
        var y = S4DMath.FftConv(u, k) + u * 0.5;
        Assert.That(y.reshape(6).data<double>().ToArray(), Is.EqualTo(expected).Within(1e-8));
    }

    [Test]
    public void LegSEigenvaluesForFourStatesMatchGoldenValues()
    {
        var (re, im, b) = S4DInitializations.Modes(S4DInitialization.LegS, 4);
        Assert.That(re, Is.EqualTo(new[] { -0.5, -0.5 }));
        Assert.That(im, Is.EqualTo(new[] { 4.603293, 0.556501 }).Within(1e-6));
        Assert.That(b, Is.Not.Null);
        Assert.That(b!.All(x => Math.Abs(x.Imaginary) <= 2), "Im B clipped to ±2");
        // ‖V*·B_LegS‖² over all N eigenvectors is ‖B_LegS‖² = Σ(2k+1) = 16; the kept half carries half of it (B real, pairs conjugate).
        Assert.That(b!.Sum(x => x.Magnitude * x.Magnitude), Is.LessThanOrEqualTo(8 + 1e-9));
    }

    [Test]
    public void InvAndLinFrequenciesMatchGoldenValues()
    {
        var (re, inv, _) = S4DInitializations.Modes(S4DInitialization.Inv, 64);
        Assert.That(re.Distinct(), Is.EqualTo(new[] { -0.5 }));
        Assert.That(new[] { inv[0], inv[1], inv[2], inv[31] }, Is.EqualTo(new[] { 1283.4255, 414.2273, 240.3876, 0.3234 }).Within(1e-4));
        var (_, lin, _) = S4DInitializations.Modes(S4DInitialization.Lin, 64);
        Assert.That(new[] { lin[1], lin[31] }, Is.EqualTo(new[] { 3.1416, 97.3894 }).Within(1e-4));
        var (real, realIm, _) = S4DInitializations.Modes(S4DInitialization.Real, 6);
        Assert.That(real, Is.EqualTo(new[] { -1.0, -2.0, -3.0 }));
        Assert.That(realIm, Is.EqualTo(new[] { 0.0, 0.0, 0.0 }));
    }

    [TestCase(S4DDiscretization.Zoh)]
    [TestCase(S4DDiscretization.Bilinear)]
    public void KernelEqualsImpulseResponseOfRecurrence(S4DDiscretization disc)
    {
        // x_k = Ā x_{k−1} + B̄ u_k, y_k = 2·Re(C x_k) with u = δ_0 gives y_ℓ = K_ℓ.
        using var scope = NewDisposeScope();
        manual_seed(1);
        int h = 3, modes = 5, length = 40;
        var (dt, a, b, c) = RandomSystem(h, modes);
        var (logDA, dB) = S4DStateSpace.Discretize(dt, a, b, disc);
        var k = S4DMath.Kernel((c * dB).unsqueeze(0), logDA, length)[0];
        var dA = logDA.exp();
        var x = dB.clone();
        for (int l = 0; l < length; l++)
        {
            var y = (c * x).sum(-1).real * 2;
            Assert.That(y.allclose(k.select(-1, l), 1e-10, 1e-12), Is.True, $"lag {l}");
            x = dA * x;
        }
    }

    [Test]
    public void BlockedVandermondeEqualsUnblocked()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var (dt, a, b, c) = RandomSystem(4, 8);
        var (logDA, dB) = S4DStateSpace.Discretize(dt, a, b, S4DDiscretization.Zoh);
        var ct = stack(new[] { c * dB, c.conj() * dB });
        var whole = S4DMath.Kernel(ct, logDA, 1000, block: 1000);
        foreach (var block in new long[] { 1, 7, 32, 333 })
            Assert.That(S4DMath.Kernel(ct, logDA, 1000, block).allclose(whole, 1e-9, 1e-12), Is.True, $"block {block}");
        Assert.That(S4DMath.BlockLength(1000), Is.EqualTo(32));
    }

    [Test]
    public void Float32KernelAtLongLengthMatchesFloat64()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var (dt, a, b, c) = RandomSystem(8, 32, dtMin: 1e-3);
        var (logDA, dB) = S4DStateSpace.Discretize(dt, a, b, S4DDiscretization.Zoh);
        var exact = S4DMath.Kernel((c * dB).unsqueeze(0), logDA, 8192);
        var (logDA32, dB32) = S4DStateSpace.Discretize(dt.to(ScalarType.Float32), a.to(ScalarType.ComplexFloat32), b.to(ScalarType.ComplexFloat32), S4DDiscretization.Zoh);
        var single = S4DMath.Kernel((c.to(ScalarType.ComplexFloat32) * dB32).unsqueeze(0), logDA32, 8192).to(ScalarType.Float64);
        double error = (single - exact).abs().max().item<double>() / exact.abs().max().item<double>();
        Assert.That(error, Is.LessThan(1e-4));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void FftConvolutionEqualsDirectConvolution(bool bidirectional)
    {
        // The reference's convention: y_t = Σ_{s≤t} k0[t−s] u_s + Σ_{s>t} k1[s−t−1] u_s, summed directly in float64.
        using var scope = NewDisposeScope();
        manual_seed(4);
        int batch = 2, length = 23, h = 3;
        var u = randn(batch, length, h, ScalarType.Float64);
        var k = randn(bidirectional ? 2 : 1, h, length, ScalarType.Float64);
        var y = S4DMath.FftConv(u, k);
        var direct = zeros(batch, length, h, ScalarType.Float64);
        for (int t = 0; t < length; t++)
        {
            for (int s = 0; s <= t; s++)
                direct[TensorIndex.Colon, t] += k[0, TensorIndex.Colon, t - s] * u[TensorIndex.Colon, s];
            if (bidirectional)
            {
                for (int s = t + 1; s < length; s++)
                    direct[TensorIndex.Colon, t] += k[1, TensorIndex.Colon, s - t - 1] * u[TensorIndex.Colon, s];
            }
        }
        Assert.That(y.allclose(direct, 1e-10, 1e-10), Is.True);
    }

    [Test]
    public void BidirectionalConvolutionMatchesHandComputedVector()
    {
        // k0 = [1, 2, 3], k1 = [10, 20, 30], u = [1, 10, 100]: the backward kernel starts one step ahead, so k1[0] never
        // meets the current step and k1[2] would need a fourth step. y_0 = 1 + 10·10 + 20·100, y_1 = 2 + 10 + 10·100, y_2 = 3 + 20 + 100.
        using var scope = NewDisposeScope();
        var k = tensor(new double[] { 1, 2, 3, 10, 20, 30 }, new long[] { 2, 1, 3 }, ScalarType.Float64);
        var u = tensor(new double[] { 1, 10, 100 }, new long[] { 1, 3, 1 }, ScalarType.Float64);
        var y = S4DMath.FftConv(u, k).reshape(3).data<double>().ToArray();
        Assert.That(y, Is.EqualTo(new double[] { 2101, 1012, 123 }).Within(1e-9));
    }

    [Test]
    public void BidirectionalConvolutionEqualsTheReferenceTwoLengthBuffer()
    {
        // The reference forms pad(k0, (0, L)) + pad(k1.flip(−1), (L, 0)) and keeps the first L outputs of its circular
        // convolution with the input padded to 2L; here that circular sum is written out in float64.
        using var scope = NewDisposeScope();
        manual_seed(8);
        int length = 17, n = 2 * length;
        var k0 = randn(length, ScalarType.Float64).data<double>().ToArray();
        var k1 = randn(length, ScalarType.Float64).data<double>().ToArray();
        var u = randn(length, ScalarType.Float64).data<double>().ToArray();
        var buffer = new double[n];
        for (int i = 0; i < length; i++)
        {
            buffer[i] += k0[i];
            buffer[length + i] += k1[length - 1 - i];
        }
        var expected = new double[length];
        for (int t = 0; t < length; t++)
        {
            for (int s = 0; s < length; s++)
                expected[t] += buffer[((t - s) % n + n) % n] * u[s];
        }
        var k = tensor(k0.Concat(k1).ToArray(), new long[] { 2, 1, length }, ScalarType.Float64);
        var y = S4DMath.FftConv(tensor(u, new long[] { 1, length, 1 }, ScalarType.Float64), k).reshape(length).data<double>().ToArray();
        Assert.That(y, Is.EqualTo(expected).Within(1e-10));
    }

    [Test]
    public void ReversedBidirectionalConvolutionMovesTheCurrentStepToTheForwardKernel()
    {
        // Reversing time turns Σ_{s≤t} k0[t−s] u_s + Σ_{s>t} k1[s−t−1] u_s into the same form with forward kernel
        // [k0[0], k1[0..L−2]] and backward kernel [k0[1..L−1], 0]: the current step stays with the forward kernel.
        using var scope = NewDisposeScope();
        manual_seed(5);
        int length = 31;
        var u = randn(2, length, 4, ScalarType.Float64);
        var k = randn(2, 4, length, ScalarType.Float64);
        var forward = cat(new[] { k[0].narrow(-1, 0, 1), k[1].narrow(-1, 0, length - 1) }, -1);
        var backward = cat(new[] { k[0].narrow(-1, 1, length - 1), zeros(4, 1, ScalarType.Float64) }, -1);
        var left = S4DMath.FftConv(u.flip(1), k).flip(1);
        var right = S4DMath.FftConv(u, stack(new[] { forward, backward }));
        Assert.That(left.allclose(right, 1e-10, 1e-10), Is.True);
    }

    [TestCase(4)]
    [TestCase(8)]
    public void LegSInputMatrixHasTheProjectedHippoWeight(int stateSize)
    {
        // B_m = v_m*·B_LegS with B_LegS,k = √(2k+1), v_m the unit eigenvector of the normal part for −1/2 + iω_m (reference:
        // no ½ factor, Im clipped to ±2). The eigenvector's phase is LAPACK's choice, but |B_m|² before clipping is not:
        // it is B_LegSᵀ P_m B_LegS with P_m = Π_{j≠m} (M − λ_j)/(λ_m − λ_j) the spectral projector of M = −iS, built
        // here from the eigenvalues ±ω alone, without any eigenvector.
        var (re, omega, b) = S4DInitializations.Modes(S4DInitialization.LegS, stateSize);
        Assert.That(b, Is.Not.Null);
        int n = stateSize;
        var m = new System.Numerics.Complex[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
                m[i, j] = new System.Numerics.Complex(0, Math.Sign(i - j) * Math.Sqrt((i + 0.5) * (j + 0.5)));
        }
        var lambdas = omega.Concat(omega.Select(w => -w)).ToArray();
        var legs = Enumerable.Range(0, n).Select(k => new System.Numerics.Complex(Math.Sqrt(2 * k + 1), 0)).ToArray();
        double total = 0;
        for (int mode = 0; mode < omega.Length; mode++)
        {
            var v = legs.ToArray();
            for (int j = 0; j < lambdas.Length; j++)
            {
                if (j == mode)
                    continue;
                var next = new System.Numerics.Complex[n];
                for (int r = 0; r < n; r++)
                {
                    for (int c = 0; c < n; c++)
                        next[r] += m[r, c] * v[c];
                    next[r] = (next[r] - lambdas[j] * v[r]) / (lambdas[mode] - lambdas[j]);
                }
                v = next;
            }
            double weight = Enumerable.Range(0, n).Sum(k => (legs[k] * v[k]).Real);
            total += weight;
            var bm = b![mode];
            Assert.That(Math.Abs(bm.Imaginary), Is.LessThanOrEqualTo(2), $"mode {mode}: Im B clipped to ±2");
            if (Math.Abs(bm.Imaginary) < 2)
                Assert.That(bm.Magnitude * bm.Magnitude, Is.EqualTo(weight).Within(1e-9 * weight), $"mode {mode}: |B|²");
            else
                Assert.That(bm.Real * bm.Real + 4, Is.LessThanOrEqualTo(weight + 1e-9), $"mode {mode}: clipped |B|²");
        }
        // Σ_m |B_m|² over the kept half is half of ‖B_LegS‖² = N²: the discarded conjugate eigenvectors carry the rest.
        Assert.That(total, Is.EqualTo(n * n / 2.0).Within(1e-9));
        Assert.That(re, Is.All.EqualTo(-0.5));
    }

    [Test]
    public void LegSInputMatrixForFourStatesMatchesClosedForm()
    {
        // N = 4: ω² solves ω⁴ − aω² + pf² = 0 (a = Σ_{n<k} S_nk², pf the Pfaffian of S), and the projector weights of
        // B_LegS = [1, √3, √5, √7] are 7.0650441127 (ω = 4.6032930071) and 0.9349558873 (ω = 0.5565011151).
        var (_, omega, b) = S4DInitializations.Modes(S4DInitialization.LegS, 4);
        double S(int n, int k) => -Math.Sign(n - k) * Math.Sqrt((n + 0.5) * (k + 0.5));
        double a = 0;
        for (int n = 0; n < 4; n++)
        {
            for (int k = n + 1; k < 4; k++)
                a += S(n, k) * S(n, k);
        }
        double pf = S(0, 1) * S(2, 3) - S(0, 2) * S(1, 3) + S(0, 3) * S(1, 2);
        double d = Math.Sqrt(a * a - 4 * pf * pf);
        Assert.That(omega, Is.EqualTo(new[] { Math.Sqrt((a + d) / 2), Math.Sqrt((a - d) / 2) }).Within(1e-12));
        Assert.That(omega, Is.EqualTo(new[] { 4.6032930071, 0.5565011151 }).Within(1e-9));
        var magnitudes = b!.Select(x => x.Magnitude * x.Magnitude).ToArray();
        Assert.That(magnitudes[1], Is.EqualTo(0.9349558873).Within(1e-9), "|B_1|² (|Im B_1| < 2, unclipped)");
        Assert.That(magnitudes[0], Is.LessThanOrEqualTo(7.0650441127 + 1e-9), "|B_0|², at most its unclipped weight");
    }

    [Test]
    public void InitializationHasRequestedStatistics()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var options = new S4DOptions { StateSize = 16, DtMin = 1e-3, DtMax = 1e-1 };
        using var ssm = new S4DStateSpace(2000, options);
        var dt = ssm.Dt.to(ScalarType.Float64);
        Assert.That(dt.min().item<double>(), Is.GreaterThanOrEqualTo(1e-3 * (1 - 1e-6)));
        Assert.That(dt.max().item<double>(), Is.LessThanOrEqualTo(1e-1 * (1 + 1e-6)));
        // log Δ uniform on [log 1e-3, log 1e-1]: mean at the midpoint log 1e-2, variance (ln 100)²/12.
        var logDt = dt.log();
        Assert.That(logDt.mean().item<double>(), Is.EqualTo(Math.Log(1e-2)).Within(0.1));
        Assert.That(logDt.var().item<double>(), Is.EqualTo(Math.Pow(Math.Log(100), 2) / 12).Within(0.1));
        Assert.That(ssm.A.real.allclose(full(2000, 8, -0.5f), 0, 1e-7), Is.True, "Re A = −1/2");
        Assert.That(ssm.InputMatrix, Is.Null, "S4D-Lin has B = 1");
    }

    /// <summary>The research notes' system: H = 1, two modes of <paramref name="init"/> for N = 4, C = [1, 1], B = 1.</summary>
    private static double[] GoldenKernel(S4DInitialization init, S4DDiscretization disc, int length, double dt)
    {
        var (re, im, _) = S4DInitializations.Modes(init, 4);
        var a = complex(tensor(re, new long[] { 1, 2 }, ScalarType.Float64), tensor(im, new long[] { 1, 2 }, ScalarType.Float64));
        var (logDA, dB) = S4DStateSpace.Discretize(tensor(new[] { dt }, ScalarType.Float64), a, null, disc);
        var c = complex(ones(1, 1, 2, ScalarType.Float64), zeros(1, 1, 2, ScalarType.Float64));
        return S4DMath.Kernel(c * dB, logDA, length).reshape(length).data<double>().ToArray();
    }

    private static (Tensor Dt, Tensor A, Tensor B, Tensor C) RandomSystem(int h, int modes, double dtMin = 1e-2)
    {
        var dt = (rand(h, ScalarType.Float64) * Math.Log(0.1 / dtMin) + Math.Log(dtMin)).exp();
        var a = complex(-rand(h, modes, ScalarType.Float64) - 0.1, randn(h, modes, ScalarType.Float64) * 5);
        var b = complex(randn(h, modes, ScalarType.Float64), randn(h, modes, ScalarType.Float64));
        var c = complex(randn(h, modes, ScalarType.Float64), randn(h, modes, ScalarType.Float64));
        return (dt, a, b, c);
    }
}
