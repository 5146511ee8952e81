using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>KernelSHAP: exact on linear models (φ = w ⊙ (x − baseline)) and on games with known Shapley values.</summary>
public class KernelShapAttributionTests
{
    [Test]
    public void OnAStockSdcaModelItRecoversWeightTimesDifferenceAndIsEfficient()
    {
        var (ml, model, w, b, x) = SdcaFixture.Train();
        var score = new TransformerScoreFunction(model, "Features", SdcaFixture.Dimensions);
        float[] baseline = [0.5f, -0.5f, 0.1f, 0, 0.3f, -0.2f, 1, 0.25f];
        var shap = new KernelShapAttribution(score, new KernelShapAttribution.Options { Baseline = baseline });
        Assert.That(shap.CoalitionCount, Is.EqualTo(254), "the default budget 2M + 2048 enumerates all 2^8 − 2 coalitions");
        var a = shap.Attribute(x, 5, new int[5]);
        var f = score.Score(x, 5);
        float fb = score.Score(baseline, 1)[0];
        int d = SdcaFixture.Dimensions;
        for (int r = 0; r < 5; r++)
        {
            for (int j = 0; j < d; j++)
                Assert.That(a[r * d + j], Is.EqualTo(w[j] * (x[r * d + j] - baseline[j])).Within(1e-4), $"row {r} feature {j}");
            Assert.That(a.AsSpan(r * d, d).ToArray().Sum(), Is.EqualTo(f[r] - fb).Within(1e-5));
        }
    }

    [Test]
    public void SampledCoalitionsStillRecoverALinearModel()
    {
        var rng = new Random(3);
        var w = Enumerable.Range(0, 20).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        var x = Enumerable.Range(0, 40).Select(_ => (float)rng.NextDouble()).ToArray();
        var shap = new KernelShapAttribution(new LinearScore(w, 1.5), new KernelShapAttribution.Options { NumberOfEvaluations = 300, Seed = 9 });
        Assert.That(shap.CoalitionCount, Is.EqualTo(300));
        var a = shap.Attribute(x, 2, [0, 0]);
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(w[i % 20] * x[i]).Within(1e-4));
    }

    [Test]
    public void ExactShapleyValuesOfAProductGame()
    {
        // f(x) = x0 x1 x2 with baseline 0: only the full coalition pays, so each player gets f(x) / 3; x3 is a dummy.
        var model = new FunctionScore(4, v => v[0] * v[1] * v[2]);
        var shap = new KernelShapAttribution(model);
        var a = shap.Attribute(new float[] { 1, 2, 3, 5 }, 1, [0]);
        Assert.That(a, Is.EqualTo(new[] { 2f, 2, 2, 0 }).Within(1e-5));
        // f = x0 + x0 x1: φ0 = x0 + x0 x1 / 2, φ1 = x0 x1 / 2.
        var mixed = new KernelShapAttribution(new FunctionScore(2, v => v[0] + v[0] * v[1]));
        Assert.That(mixed.Attribute(new float[] { 2, 3 }, 1, [0]), Is.EqualTo(new[] { 5f, 3 }).Within(1e-5));
    }

    [Test]
    public void DeterministicForASeed()
    {
        var model = new FunctionScore(12, v => MathF.Tanh(v.Select((t, i) => t * (i - 5.5f)).Sum()) + v[0] * v[3]);
        var x = Enumerable.Range(0, 24).Select(i => MathF.Sin(i)).ToArray();
        float[] Run(int seed) => new KernelShapAttribution(model, new KernelShapAttribution.Options { NumberOfEvaluations = 200, Seed = seed, BatchSize = 37 }).Attribute(x, 2, [0, 0]);
        var first = Run(7);
        Assert.That(Run(7), Is.EqualTo(first));
        Assert.That(Run(8), Is.Not.EqualTo(first));
        var f = model.Score(x, 2);
        float f0 = model.Score(new float[12], 1)[0];
        Assert.That(first.AsSpan(0, 12).ToArray().Sum(), Is.EqualTo(f[0] - f0).Within(1e-5), "efficiency holds for sampled coalitions too");
    }

    [Test]
    public void GroupsShareOneValueThatIsTheGroupsContribution()
    {
        double[] w = [1, 2, 3, 4, 5];
        var shap = new KernelShapAttribution(new LinearScore(w), new KernelShapAttribution.Options { FeatureGroups = [0, 0, 2, 1, 1] });
        Assert.That(shap.GroupCount, Is.EqualTo(3));
        float[] x = [1, 1, 2, 1, -1];
        Assert.That(shap.AttributeGroups(x, 1, [0]), Is.EqualTo(new[] { 3f, -1, 6 }).Within(1e-5));
        Assert.That(shap.Attribute(x, 1, [0]), Is.EqualTo(new[] { 3f, 3, 6, -1, -1 }).Within(1e-5));
    }

    [Test]
    public void BadInputIsRejectedWithWhatWasExpected()
    {
        var model = new LinearScore([1.0, 2, 3]);
        var baseline = Assert.Throws<ArgumentException>(() => new KernelShapAttribution(model, new KernelShapAttribution.Options { Baseline = new float[2] }))!;
        Assert.That(baseline.Message, Does.Contain("2 values").And.Contain("3"));
        var groups = Assert.Throws<ArgumentException>(() => new KernelShapAttribution(model, new KernelShapAttribution.Options { FeatureGroups = [0, 2, 2] }))!;
        Assert.That(groups.Message, Does.Contain("not 1"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KernelShapAttribution(new LinearScore(new double[10]), new KernelShapAttribution.Options { NumberOfEvaluations = 5 }));
        var shap = new KernelShapAttribution(model);
        Assert.Throws<ArgumentException>(() => shap.Attribute(new float[4], 1, [0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => shap.Attribute(new float[3], 1, [-1]));
    }
}
