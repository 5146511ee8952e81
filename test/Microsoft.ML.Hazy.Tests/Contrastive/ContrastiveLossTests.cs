using Microsoft.ML.Hazy.Contrastive;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Contrastive;

/// <summary>
/// The loss against the test vectors of the research report (§1.6: the reference code run verbatim in float64) and its
/// invariants. 1e-6 is far above float64 rounding of a 4×4 computation (~1e-15) and far below the table's differences.
/// </summary>
public sealed class ContrastiveLossTests
{
    private const double Tolerance = 1e-6;

    private static readonly double[] Angles0 = { 0.0, 0.3, 2.0, 2.4 };
    private static readonly double[] Angles1 = { 0.1, 0.5, 1.8, 2.7 };
    private static readonly long[] Labels = { 0, 0, 1, 1 };

    private static Tensor Unit(double[] angles, double scale = 1) =>
        tensor(angles.SelectMany(a => new[] { scale * Math.Cos(a), scale * Math.Sin(a) }).ToArray(), new long[] { angles.Length, 2 }, ScalarType.Float64);

    private static double Loss(ContrastiveLoss loss, double[] a0, double[] a1, long[] labels, double scale = 1)
    {
        using var v0 = Unit(a0, scale);
        using var v1 = Unit(a1, scale);
        using var y = tensor(labels);
        using var l = loss.Compute(v0, v1, y);
        return l.item<double>();
    }

    [TestCase("sup_con", 1.0, 1.0059791805)]
    [TestCase("l_spread", 1.0, 0.7961463979)]
    [TestCase("sim_clr", 1.0, 1.6277871690)]
    [TestCase("sup_con", 0.95, 0.1664039925)]
    [TestCase("l_spread", 0.95, 0.3763588039)]
    [TestCase("sim_clr", 0.95, 0.6725502640)]
    public void ReferenceTableValues(string type, double clipPos, double expected)
    {
        Assert.That(Loss(ContrastiveLoss.FromReference(type, clipPos), Angles0, Angles1, Labels), Is.EqualTo(expected).Within(Tolerance));
        // lc_norm True/False give identical values on unit vectors.
        var dot = ContrastiveLoss.FromReference(type, clipPos);
        dot = new ContrastiveLoss
        {
            Cosine = false, SupConWeight = dot.SupConWeight, SpreadWeight = dot.SpreadWeight, IgnoreLabels = dot.IgnoreLabels, ClipPositives = dot.ClipPositives,
        };
        Assert.That(Loss(dot, Angles0, Angles1, Labels), Is.EqualTo(expected).Within(Tolerance));
    }

    [Test]
    public void PresetsWithoutClippingAreTheUnclampedColumn()
    {
        Assert.That(Loss(ContrastiveLoss.SupCon(), Angles0, Angles1, Labels), Is.EqualTo(0.1664039925).Within(Tolerance));
        Assert.That(Loss(ContrastiveLoss.Spread(), Angles0, Angles1, Labels), Is.EqualTo(0.3763588039).Within(Tolerance));
        Assert.That(Loss(ContrastiveLoss.SimClr(), Angles0, Angles1, Labels), Is.EqualTo(0.6725502640).Within(Tolerance));
        Assert.That(Loss(ContrastiveLoss.ClassConditionalNce(), Angles0, Angles1, Labels), Is.EqualTo(0.5863136153).Within(Tolerance));
        // The explicit option reproduces the reference default.
        Assert.That(Loss(new ContrastiveLoss { ClipPositives = 1.0 }, Angles0, Angles1, Labels), Is.EqualTo(1.0059791805).Within(Tolerance));
    }

    [Test]
    public void SpreadIsHalfSupConPlusHalfCnce()
    {
        double supCon = Loss(ContrastiveLoss.SupCon(), Angles0, Angles1, Labels);
        double cnce = Loss(ContrastiveLoss.ClassConditionalNce(), Angles0, Angles1, Labels);
        Assert.That(Loss(ContrastiveLoss.Spread(), Angles0, Angles1, Labels), Is.EqualTo(0.5 * supCon + 0.5 * cnce).Within(1e-12));
        // And for another α, the α-weighted mix.
        Assert.That(Loss(ContrastiveLoss.Spread(0.2), Angles0, Angles1, Labels), Is.EqualTo(0.8 * supCon + 0.2 * cnce).Within(1e-12));
    }

    [Test]
    public void InvariantToPermutingSamplesInBothViews()
    {
        int[] order = { 2, 0, 3, 1 };
        foreach (var loss in new[] { ContrastiveLoss.SupCon(), ContrastiveLoss.Spread(), ContrastiveLoss.SimClr(), ContrastiveLoss.FromReference("sup_con") })
        {
            double before = Loss(loss, Angles0, Angles1, Labels);
            double after = Loss(loss, order.Select(i => Angles0[i]).ToArray(), order.Select(i => Angles1[i]).ToArray(), order.Select(i => Labels[i]).ToArray());
            Assert.That(after, Is.EqualTo(before).Within(1e-12));
        }
    }

    [Test]
    public void CosineLossIsInvariantToScalingTheEmbeddings()
    {
        double before = Loss(ContrastiveLoss.Spread(), Angles0, Angles1, Labels);
        Assert.That(Loss(ContrastiveLoss.Spread(), Angles0, Angles1, Labels, scale: 7.5), Is.EqualTo(before).Within(1e-12));
        // Dot-product scores are not.
        var dot = new ContrastiveLoss { Cosine = false, SpreadWeight = 1 };
        Assert.That(Loss(dot, Angles0, Angles1, Labels, scale: 7.5), Is.Not.EqualTo(Loss(dot, Angles0, Angles1, Labels)).Within(1e-3));
    }

    [Test]
    public void OneClassGivesZeroSupConNotNaN()
    {
        long[] one = { 0, 0, 0, 0 };
        Assert.That(Loss(ContrastiveLoss.SupCon(), Angles0, Angles1, one), Is.EqualTo(0).Within(1e-12));
        // Clamped: mean of (s_ip − min(s_ip, 1)) over positives, ≥ 0 and finite; computed independently here.
        double expected = 0;
        for (int i = 0; i < 4; i++)
            expected += Enumerable.Range(0, 4).Select(j => Math.Cos(Angles1[i] - Angles0[j]) / 0.5).Select(s => s - Math.Min(s, 1)).Average() / 4;
        double clamped = Loss(ContrastiveLoss.FromReference("sup_con"), Angles0, Angles1, one);
        Assert.That(clamped, Is.EqualTo(expected).Within(1e-12));
        Assert.That(double.IsFinite(Loss(ContrastiveLoss.Spread(), Angles0, Angles1, one)));

        // And its gradient is finite.
        using var v0 = Unit(Angles0).requires_grad_();
        using var v1 = Unit(Angles1).requires_grad_();
        using var y = tensor(one);
        using var l = ContrastiveLoss.SupCon().Compute(v0, v1, y);
        l.backward();
        Assert.That(v0.grad!.isfinite().all().item<bool>() && v1.grad!.isfinite().all().item<bool>());
    }

    [Test]
    public void CnceGradientIsZeroForOtherClassSamples()
    {
        using var v0 = Unit(Angles0).requires_grad_();
        using var v1 = Unit(Angles1).requires_grad_();
        using var y = tensor(Labels);
        using var l = ContrastiveLoss.ClassConditionalNce().Compute(v0, v1, y);
        // If other-class candidates had any gradient, the whole batch's gradient would differ from each class's loss computed
        // on that class alone (scaled by its share of the anchors).
        l.backward();
        var full = v0.grad!.clone();
        double[] g = full.data<double>().ToArray();
        for (int c = 0; c < 2; c++)
        {
            var idx = Enumerable.Range(0, 4).Where(i => Labels[i] == c).ToArray();
            using var a0 = Unit(idx.Select(i => Angles0[i]).ToArray()).requires_grad_();
            using var a1 = Unit(idx.Select(i => Angles1[i]).ToArray());
            using var yc = tensor(idx.Select(i => Labels[i]).ToArray());
            using var lc = ContrastiveLoss.ClassConditionalNce().Compute(a0, a1, yc);
            lc.backward();
            var gc = a0.grad!.data<double>().ToArray();
            for (int k = 0; k < idx.Length; k++)
            {
                for (int d = 0; d < 2; d++)
                    Assert.That(g[idx[k] * 2 + d], Is.EqualTo(gc[k * 2 + d] * idx.Length / 4.0).Within(1e-12), $"sample {idx[k]}, dim {d}");
            }
        }
        full.Dispose();
    }

    [Test]
    public void CnceOfOneAnchorHasNoGradientForOtherClassCandidates()
    {
        // Directly: the loss of anchor 0 alone (a batch whose other rows are other-class candidates) does not move them.
        using var v0 = Unit(Angles0).requires_grad_();
        using var v1 = Unit(Angles1);
        using var y = tensor(new long[] { 0, 1, 1, 1 });
        using var l = ContrastiveLoss.ClassConditionalNce().Compute(v0, v1, y);
        l.backward();
        var g = v0.grad!.data<double>().ToArray();
        // Candidates 1-3 (class 1) receive gradient only from class-1 anchors 1-3, never from anchor 0; candidate 0 only from anchor 0,
        // whose cNCE term is −s_00 + log e^{s_00} = 0 for any s_00, so its gradient is exactly zero.
        Assert.That(g[0], Is.EqualTo(0).Within(1e-15));
        Assert.That(g[1], Is.EqualTo(0).Within(1e-15));
    }

    [TestCase(false, 1.0, null)]
    [TestCase(true, 1.0, null)]
    [TestCase(true, 0.3, null)]
    [TestCase(false, 1.0, 0.8)]
    [TestCase(true, 2.0, 0.8)]
    public void MatchesAnIndependentFloat64ComputationOnRandomBatches(bool posInDenom, double weight, double? clip)
    {
        var rand = new Random(11);
        const int b = 9, d = 5;
        var x0 = Enumerable.Range(0, b * d).Select(_ => rand.NextDouble() * 2 - 1).ToArray();
        var x1 = Enumerable.Range(0, b * d).Select(_ => rand.NextDouble() * 2 - 1).ToArray();
        var labels = Enumerable.Range(0, b).Select(i => (long)(i % 3)).ToArray();
        foreach (var (lc, spread) in new[] { (1.0, 0.0), (1.0, 1.0), (0.3, 0.7), (0.0, 1.0) })
        {
            var loss = new ContrastiveLoss
            {
                Temperature = 0.3, SupConWeight = lc, SpreadWeight = spread, PositivesInDenominator = posInDenom, PositiveDenominatorWeight = weight, ClipPositives = clip,
            };
            using var t0 = tensor(x0, new long[] { b, d }, ScalarType.Float64);
            using var t1 = tensor(x1, new long[] { b, d }, ScalarType.Float64);
            using var y = tensor(labels);
            using var l = loss.Compute(t0, t1, y);
            Assert.That(l.item<double>(), Is.EqualTo(Reference(x0, x1, labels, b, d, loss)).Within(1e-10), $"a_lc {lc}, a_spread {spread}");
        }
    }

    /// <summary>The formulas of §1.2, written out with loops.</summary>
    private static double Reference(double[] x0, double[] x1, long[] y, int b, int d, ContrastiveLoss o)
    {
        double Norm(double[] x, int i) => Math.Sqrt(Enumerable.Range(0, d).Sum(k => x[i * d + k] * x[i * d + k]));
        var s = new double[b, b];
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < b; j++)
                s[i, j] = Enumerable.Range(0, d).Sum(k => x1[i * d + k] * x0[j * d + k]) / (Norm(x1, i) * Norm(x0, j)) / o.Temperature;
        }
        double total = 0;
        for (int i = 0; i < b; i++)
        {
            var p = Enumerable.Range(0, b).Where(j => y[j] == y[i]).ToArray();
            var n = Enumerable.Range(0, b).Where(j => y[j] != y[i]).ToArray();
            double negatives = n.Sum(j => Math.Exp(s[i, j]));
            double sc = 0;
            foreach (var j in p)
            {
                double denominator = o.PositivesInDenominator ? p.Sum(q => o.PositiveDenominatorWeight * Math.Exp(s[i, q])) + negatives : Math.Exp(s[i, j]) + negatives;
                double numerator = o.ClipPositives is double c ? Math.Min(s[i, j], c) : s[i, j];
                sc += -numerator + Math.Log(denominator);
            }
            sc /= p.Length;
            double cnce = -s[i, i] + Math.Log(p.Sum(j => Math.Exp(s[i, j])));
            total += (o.SupConWeight * sc + o.SpreadWeight * cnce) / (o.SupConWeight + o.SpreadWeight);
        }
        return total / b;
    }

    [Test]
    public void BadSettingsAreRejectedNamingThem()
    {
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => new ContrastiveLoss { Temperature = 0 }.Check())!.ParamName, Is.EqualTo("Temperature"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ContrastiveLoss { SupConWeight = 0, SpreadWeight = 0 }.Check());
        Assert.Throws<ArgumentOutOfRangeException>(() => ContrastiveLoss.Spread(1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ContrastiveLoss.FromReference("supcon"));
    }
}
