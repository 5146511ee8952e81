using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>Map similarity (Pearson, Spearman, KSG mutual information), class-contrast maps and the sanity-check comparison.</summary>
public class PlausibilityAndSanityTests
{
    private static float[] Gaussian(Random rng, int n) =>
        Enumerable.Range(0, n).Select(_ => (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()))).ToArray();

    [Test]
    public void PearsonOfAMapWithItselfIsOneAndWithItsNegationMinusOne()
    {
        var a = Gaussian(new Random(1), 100);
        Assert.That(MapSimilarity.Pearson(a, a), Is.EqualTo(1).Within(1e-12));
        Assert.That(MapSimilarity.Pearson(a, a.Select(v => -v).ToArray()), Is.EqualTo(-1).Within(1e-12));
        Assert.That(MapSimilarity.Pearson(a, a.Select(v => 3 * v + 2).ToArray()), Is.EqualTo(1).Within(1e-6));
        Assert.That(MapSimilarity.Pearson(a, new float[100]), Is.NaN);
    }

    [Test]
    public void MaskRestrictsTheComparison()
    {
        float[] a = [1, 2, 3, 4, 5];
        float[] b = [1, 2, 3, 4, -50];
        Assert.That(MapSimilarity.Pearson(a, b), Is.LessThan(0));
        Assert.That(MapSimilarity.Pearson(a, b, [true, true, true, true, false]), Is.EqualTo(1).Within(1e-12));
        Assert.Throws<ArgumentException>(() => MapSimilarity.Pearson(a, b, [true]));
        Assert.Throws<ArgumentException>(() => MapSimilarity.Pearson(a, [1, 2]));
    }

    [Test]
    public void SpearmanIsOneForAMonotoneTransformAndAveragesTies()
    {
        var a = Gaussian(new Random(2), 200);
        var cubed = a.Select(v => v * v * v).ToArray();
        Assert.That(MapSimilarity.Spearman(a, cubed), Is.EqualTo(1).Within(1e-12));
        Assert.That(MapSimilarity.Pearson(a, cubed), Is.LessThan(0.95));
        // Ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]: r = 4.5 / √(4.5 · 5).
        Assert.That(MapSimilarity.Spearman([0, 1, 1, 2], [0, 1, 2, 3]), Is.EqualTo(4.5 / Math.Sqrt(4.5 * 5)).Within(1e-12));
    }

    [Test]
    public void KsgMutualInformationIsNearZeroForIndependentSamples()
    {
        var rng = new Random(3);
        var x = Gaussian(rng, 2000);
        var y = Gaussian(rng, 2000);
        double mi = MapSimilarity.MutualInformation(x, y);
        TestContext.Out.WriteLine($"KSG MI of independent Gaussians (n = 2000): {mi:F4}");
        Assert.That(mi, Is.LessThan(0.05));
    }

    [Test]
    public void KsgMutualInformationMatchesTheGaussianClosedForm()
    {
        const double rho = 0.8;
        var rng = new Random(4);
        var x = Gaussian(rng, 2000);
        var e = Gaussian(rng, 2000);
        var y = x.Select((v, i) => (float)(rho * v + Math.Sqrt(1 - rho * rho) * e[i])).ToArray();
        double closedForm = -0.5 * Math.Log(1 - rho * rho);
        double mi = MapSimilarity.MutualInformation(x, y);
        TestContext.Out.WriteLine($"KSG MI at rho = 0.8 (n = 2000): {mi:F4}, closed form {closedForm:F4}");
        Assert.That(mi, Is.EqualTo(closedForm).Within(0.05));
        // Mutual information is invariant to monotone maps of either variable; the estimate nearly so.
        Assert.That(MapSimilarity.MutualInformation(x.Select(MathF.Exp).ToArray(), y), Is.EqualTo(closedForm).Within(0.08));
    }

    [Test]
    public void KsgNeighbourSearchMatchesBruteForce()
    {
        // The estimator written out literally (O(n²), scikit-learn's formula: radius just below the k-th joint
        // max-norm distance, counts of marginal distances ≤ radius); the tie-breaking noise is far below these gaps.
        var rng = new Random(7);
        var x = Gaussian(rng, 300);
        var y = x.Select((v, i) => v * v + 0.3f * (float)rng.NextDouble()).ToArray();
        double[] Scaled(float[] v)
        {
            double mean = v.Average(x => (double)x), sd = Math.Sqrt(v.Average(x => (x - mean) * (x - mean)));
            return v.Select(x => x / sd).ToArray();
        }

        double Digamma(int m) => Enumerable.Range(1, m - 1).Sum(i => 1.0 / i) - 0.57721566490153286;
        var (sx, sy) = (Scaled(x), Scaled(y));
        int n = sx.Length, k = 3;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var distances = Enumerable.Range(0, n).Where(j => j != i).Select(j => Math.Max(Math.Abs(sx[i] - sx[j]), Math.Abs(sy[i] - sy[j]))).Order().ToArray();
            double radius = Math.BitDecrement(distances[k - 1]);
            int nx = Enumerable.Range(0, n).Count(j => j != i && Math.Abs(sx[i] - sx[j]) <= radius);
            int ny = Enumerable.Range(0, n).Count(j => j != i && Math.Abs(sy[i] - sy[j]) <= radius);
            sum += Digamma(nx + 1) + Digamma(ny + 1);
        }

        double expected = Math.Max(0, Digamma(n) + Digamma(k) - sum / n);
        Assert.That(expected, Is.GreaterThan(0.3));
        Assert.That(MapSimilarity.MutualInformation(x, y), Is.EqualTo(expected).Within(1e-9));
    }

    [Test]
    public void MutualInformationIsDeterministicAndHandlesTies()
    {
        float[] a = Enumerable.Range(0, 300).Select(i => (float)(i % 3)).ToArray();
        float[] b = Enumerable.Range(0, 300).Select(i => (float)(i % 3 == 0 ? 1 : 0)).ToArray();
        double first = MapSimilarity.MutualInformation(a, b);
        Assert.That(MapSimilarity.MutualInformation(a, b), Is.EqualTo(first));
        Assert.That(first, Is.GreaterThan(0.3), "b is a function of a");
        Assert.Throws<ArgumentOutOfRangeException>(() => MapSimilarity.MutualInformation([1, 2, 3], [1, 2, 3]));
    }

    [Test]
    public void ClassContrastMapsAreClassMeanMinusOtherMean()
    {
        float[] x = [1, 2, 3, 4, /* class 1 */ 5, 0, 7, 2, 9, 4, /* class 2 */ 0, 0];
        int[] labels = [0, 0, 1, 1, 1, 2];
        var contrast = Plausibility.ClassContrastMaps(x, 6, labels, 3);
        // Class 0: mean [2, 3]; others [5, 0] [7, 2] [9, 4] [0, 0] → mean [5.25, 1.5].
        // Class 1: mean [7, 2]; others [1, 2] [3, 4] [0, 0] → mean [4/3, 2].
        // Class 2: mean [0, 0]; others → mean [5, 2.4].
        Assert.That(contrast, Is.EqualTo(new[] { -3.25f, 1.5f, 7 - 4 / 3f, 0, -5, -2.4f }).Within(1e-6));
        Assert.That(Plausibility.ClassMeanMaps(x, 6, labels, 3), Is.EqualTo(new[] { 2f, 3, 7, 2, 0, 0 }).Within(1e-6));
        var two = Plausibility.ClassContrastMaps(x.AsSpan(0, 10), 5, labels.AsSpan(0, 5), 2);
        Assert.That(two, Is.EqualTo(new[] { -5f, 1, 5, -1 }).Within(1e-6));
    }

    [Test]
    public void AttributionsEqualToTheContrastAreFullyPlausible()
    {
        var rng = new Random(5);
        const int d = 30, n = 12;
        var x = Gaussian(rng, n * d);
        var labels = Enumerable.Range(0, n).Select(i => i % 3).ToArray();
        var contrast = Plausibility.ClassContrastMaps(x, n, labels, 3);
        var attributions = Enumerable.Range(0, n * d).Select(i => contrast[labels[i / d] * d + i % d]).ToArray();
        var metrics = Plausibility.Evaluate(attributions, x, n, labels, 3);
        Assert.That(metrics.PerClassPearson, Is.All.EqualTo(1).Within(1e-6));
        Assert.That(metrics.MeanPearson, Is.EqualTo(1).Within(1e-6));
        Assert.That(metrics.MeanMutualInformation, Is.GreaterThan(1));
    }

    [Test]
    public void ClassMapsRejectMissingClassesAndBadSizes()
    {
        var missing = Assert.Throws<ArgumentException>(() => Plausibility.ClassContrastMaps(new float[4], 2, [0, 2], 3))!;
        Assert.That(missing.Message, Does.Contain("label 1"));
        Assert.Throws<ArgumentException>(() => Plausibility.ClassContrastMaps(new float[4], 2, [0, 0], 1));
        Assert.Throws<ArgumentException>(() => Plausibility.ClassMeanMaps(new float[5], 2, [0, 1], 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Plausibility.ClassMeanMaps(new float[4], 2, [0, 3], 2));
    }

    [Test]
    public void SanityComparisonIsOneForRescaledMapsAndNearZeroForIndependentOnes()
    {
        var rng = new Random(6);
        const int d = 500, n = 6;
        var original = Gaussian(rng, n * d);
        var same = Array.ConvertAll(original, v => -2 * v);
        var similar = SanityChecks.Compare(original, same, n);
        Assert.That(similar.PearsonOfAbsolute, Is.EqualTo(1).Within(1e-6));
        Assert.That(similar.SpearmanOfAbsolute, Is.EqualTo(1).Within(1e-12));
        Assert.That(similar.MutualInformation, Is.GreaterThan(2));
        Assert.That(similar.RowCount, Is.EqualTo(n));
        var independent = SanityChecks.Compare(original, Gaussian(rng, n * d), n);
        Assert.That(Math.Abs(independent.PearsonOfAbsolute), Is.LessThan(0.1));
        Assert.That(Math.Abs(independent.SpearmanOfAbsolute), Is.LessThan(0.1));
        Assert.That(independent.MutualInformation, Is.LessThan(0.05));
        var dead = SanityChecks.Compare(original, new float[n * d], n);
        Assert.That(dead.UndefinedCorrelationCount, Is.EqualTo(n));
        Assert.That(dead.PearsonOfAbsolute, Is.NaN);
        Assert.Throws<ArgumentException>(() => SanityChecks.Compare(original, new float[10], n));
    }
}
