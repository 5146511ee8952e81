using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>The faithfulness test on linear models, where occluding a feature removes exactly its contribution w_j x_j.</summary>
public class FaithfulnessTests
{
    [Test]
    public void DefaultGridIsThePapers()
    {
        var f = Faithfulness.DefaultFractions;
        Assert.That(f, Has.Count.EqualTo(36));
        Assert.That(f[0], Is.EqualTo(0));
        Assert.That(f[1], Is.EqualTo(0.002).Within(1e-12));
        Assert.That(f[^1], Is.EqualTo(0.5).Within(1e-12));
        foreach (double p in new[] { 0.018, 0.02, 0.045, 0.05, 0.09, 0.1, 0.28, 0.3, 0.45 })
            Assert.That(f.Any(v => Math.Abs(v - p) < 1e-12), $"{p} is on the grid");
        Assert.That(f.Zip(f.Skip(1)).All(p => p.Second > p.First));
    }

    [Test]
    public void WithPositiveContributionsAndInputTimesWeightTheLogitAndAccuracyFallMonotonically()
    {
        var rng = new Random(11);
        const int d = 60, n = 40;
        var w = Enumerable.Range(0, d).Select(_ => 0.1 + rng.NextDouble()).ToArray();
        double threshold = 0.45 * w.Sum();
        // Logit 0 is the constant threshold, logit 1 is w·x; rows of class 0 have small inputs.
        var model = new LinearScore([new double[d], w], [threshold, 0]);
        var labels = Enumerable.Range(0, n).Select(i => i % 4 == 0 ? 0 : 1).ToArray();
        var x = new float[n * d];
        for (int r = 0; r < n; r++)
            for (int j = 0; j < d; j++)
                x[r * d + j] = (float)(labels[r] == 0 ? 0.05 + 0.3 * rng.NextDouble() : 0.5 + rng.NextDouble());
        var attributions = x.Select((v, i) => (float)(v * w[i % d])).ToArray();
        var metrics = Faithfulness.Evaluate(model, x, n, labels, attributions);
        Assert.That(metrics.KeptRowCount, Is.EqualTo(n));
        Assert.That(metrics.Accuracies[0], Is.EqualTo(1));
        for (int f = 1; f < metrics.Fractions.Count; f++)
        {
            Assert.That(metrics.MeanTargetScores[f], Is.LessThanOrEqualTo(metrics.MeanTargetScores[f - 1]), $"φ = {metrics.Fractions[f]}");
            Assert.That(metrics.Accuracies[f], Is.LessThanOrEqualTo(metrics.Accuracies[f - 1]), $"φ = {metrics.Fractions[f]}");
        }

        Assert.That(metrics.MeanTargetScores[^1], Is.LessThan(metrics.MeanTargetScores[0]));
        Assert.That(metrics.ChanceLevel, Is.EqualTo(0.75));
        Assert.That(metrics.Accuracies[^1], Is.EqualTo(0.25), "at φ = 50 % every class-1 row has fallen below the threshold");
        Assert.That(metrics.FirstFractionAtChance, Is.Not.Null);
        Assert.That(metrics.Accuracies[metrics.Fractions.ToList().IndexOf(metrics.FirstFractionAtChance!.Value)], Is.LessThanOrEqualTo(0.75));
    }

    [Test]
    public void TheTargetScoreLosesExactlyTheTopContributions()
    {
        double[] w = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        var model = new LinearScore(w, -1);
        float[] x = [3, 9, 1, 7, 5, 2, 8, 4, 6, 10];
        var metrics = Faithfulness.Evaluate(model, x, 1, [1], x, new Faithfulness.Options { Fractions = [0, 0.1, 0.25, 0.5] });
        // ⌊φ·10⌋ = 0, 1, 2, 5 features removed: 10, then 9, then 8, 7, 6.
        Assert.That(metrics.MeanTargetScores, Is.EqualTo(new[] { 54.0, 44, 35, 14 }).Within(1e-5));
    }

    [Test]
    public void ChanceLevelFirstFractionAndAreaFollowTheirDefinitions()
    {
        var model = new LinearScore([1.0, 1, 1, 1], -2.5);
        float[] x = [4, 1, 1, 1, /* B */ 1, 1, 1, 1, /* C */ 0, 0, 0, 0.5f, /* D, misclassified */ 0, 0, 0, 0];
        var metrics = Faithfulness.Evaluate(model, x, 4, [1, 1, 0, 1], x, new Faithfulness.Options { Fractions = [0, 0.25, 0.5, 0.75] });
        Assert.That(metrics.RowCount, Is.EqualTo(4));
        Assert.That(metrics.KeptRowCount, Is.EqualTo(3));
        Assert.That(metrics.ChanceLevel, Is.EqualTo(2.0 / 3).Within(1e-12));
        Assert.That(metrics.Accuracies, Is.EqualTo(new[] { 1, 1, 1.0 / 3, 1.0 / 3 }).Within(1e-12));
        Assert.That(metrics.FirstFractionAtChance, Is.EqualTo(0.5));
        Assert.That(metrics.AreaUnderCurve, Is.EqualTo(0.25 + 0.25 * (4.0 / 3) / 2 + 0.25 * (2.0 / 3) / 2).Within(1e-12));
        // Label 0 of a margin model scores −margin: C's −(0.5 − 2.5) = 2 at φ = 0.
        Assert.That(metrics.MeanTargetScores[0], Is.EqualTo((4.5 + 1.5 + 2) / 3).Within(1e-6));
    }

    [Test]
    public void NeverReachingChanceGivesNull()
    {
        // The model reads feature 0 only, and the attributions rank it last.
        var model = new LinearScore([1.0, 0, 0, 0]);
        float[] x = [1, 2, 3, 4, -1, 2, 3, 4];
        float[] a = [0, 1, 1, 1, 0, 1, 1, 1];
        var metrics = Faithfulness.Evaluate(model, x, 2, [1, 0], a, new Faithfulness.Options { Fractions = [0, 0.25, 0.5, 0.75] });
        Assert.That(metrics.Accuracies, Is.All.EqualTo(1));
        Assert.That(metrics.FirstFractionAtChance, Is.Null);
        Assert.That(metrics.AreaUnderCurve, Is.EqualTo(0.75).Within(1e-12));
    }

    [Test]
    public void UnionOcclusionDiffersWhenTopFeaturesDiffer()
    {
        var model = new LinearScore([1.0, 1, 1, 1], -2.5);
        float[] x = [4, 1, 1, 1, 1, 1, 1, 4];
        var options = new Faithfulness.Options { Fractions = [0, 0.25] };
        var perImage = Faithfulness.Evaluate(model, x, 2, [1, 1], x, options);
        options.UnionOcclusion = true;
        var union = Faithfulness.Evaluate(model, x, 2, [1, 1], x, options);
        // Per image each row loses its own 4 (sum 3); in union mode both lose features 0 and 3 (sum 2).
        Assert.That(perImage.MeanTargetScores[1], Is.EqualTo(0.5).Within(1e-6));
        Assert.That(union.MeanTargetScores[1], Is.EqualTo(-0.5).Within(1e-6));
        Assert.That(perImage.Accuracies[1], Is.EqualTo(1));
        Assert.That(union.Accuracies[1], Is.EqualTo(0));
    }

    [Test]
    public void UnionOcclusionIsPerImageOcclusionWhenRankingsAgree()
    {
        var model = new LinearScore([1.0, 1, 1, 1], -2.5);
        float[] x = [4, 3, 2, 1, 5, 2, 1, 0.5f];
        var options = new Faithfulness.Options { Fractions = [0, 0.25, 0.5, 0.75] };
        var perImage = Faithfulness.Evaluate(model, x, 2, [1, 1], x, options);
        options.UnionOcclusion = true;
        var union = Faithfulness.Evaluate(model, x, 2, [1, 1], x, options);
        Assert.That(union.MeanTargetScores, Is.EqualTo(perImage.MeanTargetScores));
        Assert.That(union.Accuracies, Is.EqualTo(perImage.Accuracies));
    }

    [Test]
    public void OnlyFeaturesInsideTheMaskAreOccluded()
    {
        var model = new LinearScore([1.0, 1, 1, 1]);
        float[] x = [10, 1, 2, 3];
        var metrics = Faithfulness.Evaluate(model, x, 1, [1], x,
            new Faithfulness.Options { Fractions = [0, 1.0 / 3, 2.0 / 3, 1], BackgroundMask = [false, true, true, true], OcclusionValue = -1 });
        // ⌊φ·3⌋ of the three masked features, best first (3, 2, 1), each replaced by −1.
        Assert.That(metrics.MeanTargetScores, Is.EqualTo(new[] { 16.0, 12, 9, 7 }).Within(1e-5));
    }

    [Test]
    public void BadInputIsRejectedWithWhatWasExpected()
    {
        var model = new LinearScore([1.0, 1]);
        float[] x = [1, 1, 2, 2];
        var label = Assert.Throws<ArgumentOutOfRangeException>(() => Faithfulness.Evaluate(model, x, 2, [1, 2], x))!;
        Assert.That(label.Message, Does.Contain("expected 0 to 1"));
        var attributions = Assert.Throws<ArgumentException>(() => Faithfulness.Evaluate(model, x, 2, [1, 1], new float[3]))!;
        Assert.That(attributions.Message, Does.Contain("attributions").And.Contain("2 × 2"));
        Assert.Throws<ArgumentException>(() => Faithfulness.Evaluate(model, x, 2, [1, 1], x, new Faithfulness.Options { Fractions = [0, 0.5, 0.2] }));
        Assert.Throws<ArgumentException>(() => Faithfulness.Evaluate(model, x, 2, [1, 1], x, new Faithfulness.Options { BackgroundMask = [true] }));
        Assert.Throws<InvalidOperationException>(() => Faithfulness.Evaluate(model, x, 2, [0, 0], x));
    }
}
