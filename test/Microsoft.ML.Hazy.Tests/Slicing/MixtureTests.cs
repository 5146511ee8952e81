using Microsoft.ML.Hazy.Slicing;
using Microsoft.ML.Hazy.Slicing.Evaluation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Slicing;

/// <summary>The error-aware mixture against closed forms, scikit-learn's diagonal GMM and the reference's test vectors.</summary>
public class MixtureTests
{
    private static MixtureData FromPlanted(SlicingTestData.Planted p)
    {
        int n = p.Rows;
        var y = new double[n * 2];
        var yh = new double[n * 2];
        for (int i = 0; i < n; i++)
        {
            y[i * 2 + (p.Y[i] ? 1 : 0)] = 1;
            yh[i * 2] = 1.0 - p.P[i];
            yh[i * 2 + 1] = p.P[i];
        }
        return new MixtureData(Array.ConvertAll(p.X, v => (double)v), n, p.D, y, yh, 2);
    }

    // The reference reaches Rand index 1.0 from numpy's seed-42 draws with each initialisation; .NET's draws differ. On this
    // 9-point testbed a single start reaches the clusters from most seeds with k-means and confusion starts (25 and 27 of
    // seeds 0-39 here) and from fewer with random starts (9 of 40), and more starts do not help: the best bound belongs to
    // degenerate one-point components. So the test pins the k-means start at the reference's seed.
    [Test]
    public void TestbedSlicesMatchTheClustersWithRandIndexOne()
    {
        const DominoInitialization init = DominoInitialization.KMeans;
        int n = SlicingTestData.TestbedX.Length;
        var x = SlicingTestData.TestbedX.SelectMany(r => r).ToArray();
        var y = new double[n * 2];
        var yh = new double[n * 2];
        for (int i = 0; i < n; i++)
        {
            int cluster = SlicingTestData.TestbedClusters[i];
            y[i * 2 + (cluster == 1 ? 1 : 0)] = 1;
            yh[i * 2 + (cluster is 1 or 2 ? 1 : 0)] = 1;
        }
        var data = new MixtureData(x, n, 5, y, yh, 2);
        var fit = ErrorAwareMixture.Fit(data, new MixtureSettings(5, 1, 1, Initialization: init), new Random(42));
        var slices = ErrorAwareMixture.SelectSlices(fit.Parameters, 5);
        var assigned = Enumerable.Range(0, n).Select(i => slices.Select((s, j) => (p: fit.Responsibilities[i * 5 + s], j)).MaxBy(t => t.p).j).ToArray();
        Assert.That(RandIndex(assigned, SlicingTestData.TestbedClusters), Is.EqualTo(1.0), string.Join(",", assigned));
    }

    [Test]
    public void ZeroWeightsEqualScikitLearnDiagonalGaussianMixture()
    {
        // X[i, j] = C[i mod 3][j] + 1.5 sin(0.37 i (j + 1) + 0.5 j); initial hard assignment (i mod 3 + [i mod 7 = 0]) mod 3.
        // Golden values: sklearn 1.2.1 GaussianMixture(3, 'diag', reg_covar=1e-6, tol=1e-3) started from the M-step of that assignment.
        int n = 60, d = 3, k = 3;
        double[][] centers = { new double[] { 0, 0, 0 }, new double[] { 3, 3, 0 }, new double[] { 0, 4, 4 } };
        var x = new double[n * d];
        var resp = new double[n * k];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < d; j++)
                x[i * d + j] = centers[i % 3][j] + 1.5 * Math.Sin(0.37 * i * (j + 1) + 0.5 * j);
            resp[i * k + (i % 3 + (i % 7 == 0 ? 1 : 0)) % 3] = 1;
        }
        var random = new Random(5);
        var y = Enumerable.Range(0, n * 2).Select(_ => random.NextDouble()).ToArray();
        var data = new MixtureData(x, n, d, y, y.Reverse().ToArray(), 2);
        var fit = ErrorAwareMixture.FitFrom(data, new MixtureSettings(k, 0, 0), resp);

        double[] weights = { 0.35455230377923763, 0.3113137105652094, 0.3341339856555531 };
        double[] means =
        {
            0.22229146785811688, 0.10586203525691915, 0.027530578800810786, 3.237901800977836, 3.084333932301293, 0.09892888531576655,
            0.143394554055373, 4.011471489390988, 3.967099821671263,
        };
        double[] variances =
        {
            1.187287907487114, 1.2427994116396164, 1.2592053470020113, 1.0272960700220952, 1.0830615216328308, 1.13860612451174,
            1.1001831833910671, 1.1423461925271485, 1.0141348468132463,
        };
        Assert.That(fit.Iterations, Is.EqualTo(5));
        Assert.That(fit.Converged, Is.True);
        Assert.That(fit.LowerBound, Is.EqualTo(-5.480180953430434).Within(1e-10));
        Assert.That(fit.Parameters.Weights, Is.EqualTo(weights).Within(1e-10));
        Assert.That(fit.Parameters.Means, Is.EqualTo(means).Within(1e-10));
        Assert.That(fit.Parameters.Variances, Is.EqualTo(variances).Within(1e-10));
        Assert.That(fit.Responsibilities[0], Is.EqualTo(0.9988355528620694).Within(1e-9));
        Assert.That(fit.Responsibilities[k + 1], Is.EqualTo(0.9993192093814919).Within(1e-9));
    }

    [Test]
    public void WeightsAndResponsibilitiesSumToOne()
    {
        var data = FromPlanted(SlicingTestData.PlantedSlice(600, 3));
        var fit = ErrorAwareMixture.Fit(data, new MixtureSettings(8, 10, 10), new Random(1));
        Assert.That(fit.Parameters.Weights.Sum(), Is.EqualTo(1.0).Within(1e-12));
        for (int i = 0; i < data.Rows; i++)
            Assert.That(fit.Responsibilities.AsSpan(i * 8, 8).ToArray().Sum(), Is.EqualTo(1.0).Within(1e-12), $"row {i}");
        for (int s = 0; s < 8; s++)
        {
            Assert.That(fit.Parameters.LabelProbabilities.AsSpan(s * 2, 2).ToArray().Sum(), Is.EqualTo(1.0).Within(1e-9), $"p of component {s}");
            Assert.That(fit.Parameters.PredictionProbabilities.AsSpan(s * 2, 2).ToArray().Sum(), Is.EqualTo(1.0).Within(1e-9), $"p̂ of component {s}");
        }
    }

    [Test]
    public void OneComponentHasTheDataMeanAndBiasedVariancePlusRegularization()
    {
        var data = FromPlanted(SlicingTestData.PlantedSlice(300, 4));
        var fit = ErrorAwareMixture.Fit(data, new MixtureSettings(1, 10, 10, Initialization: DominoInitialization.Random), new Random(2));
        int n = data.Rows, d = data.Dimensions;
        for (int j = 0; j < d; j++)
        {
            double mean = 0, sq = 0;
            for (int i = 0; i < n; i++)
                mean += data.X[i * d + j];
            mean /= n;
            for (int i = 0; i < n; i++)
                sq += (data.X[i * d + j] - mean) * (data.X[i * d + j] - mean);
            Assert.That(fit.Parameters.Means[j], Is.EqualTo(mean).Within(1e-12), $"mean {j}");
            Assert.That(fit.Parameters.Variances[j], Is.EqualTo(sq / n + 1e-6).Within(1e-11), $"variance {j}");
        }
        Assert.That(fit.Parameters.Weights[0], Is.EqualTo(1.0).Within(1e-12));
        Assert.That(fit.Parameters.LabelProbabilities[1], Is.EqualTo(data.Labels.Where((_, i) => i % 2 == 1).Average()).Within(1e-12));
    }

    [TestCase(0.0)]
    [TestCase(1.0)]
    [TestCase(10.0)]
    public void LowerBoundNeverDecreases(double weight)
    {
        // Hard labels and predictions make every M-step an exact maximiser, so EM's bound is monotone.
        var data = FromPlanted(SlicingTestData.PlantedSlice(800, 6, hardPredictions: true));
        var settings = new MixtureSettings(6, weight, weight, Tolerance: 0, MaximumIterations: 60, Initialization: DominoInitialization.Random);
        var fit = ErrorAwareMixture.Fit(data, settings, new Random(9));
        Assert.That(fit.LowerBoundHistory.Length, Is.EqualTo(60));
        for (int i = 1; i < fit.LowerBoundHistory.Length; i++)
            Assert.That(fit.LowerBoundHistory[i], Is.GreaterThanOrEqualTo(fit.LowerBoundHistory[i - 1] - 1e-9 * Math.Abs(fit.LowerBoundHistory[i - 1])), $"iteration {i + 1}");
        Assert.That(fit.LowerBoundHistory[^1], Is.GreaterThan(fit.LowerBoundHistory[0]));
    }

    [Test]
    public void SelectionRuleRanksTheLargestGapFirst()
    {
        var p = new MixtureParameters(2, 1, 2);
        p.LabelProbabilities[0] = 0; p.LabelProbabilities[1] = 1;
        p.LabelProbabilities[2] = 0; p.LabelProbabilities[3] = 1;
        p.PredictionProbabilities[0] = 0.9; p.PredictionProbabilities[1] = 0.1;
        p.PredictionProbabilities[2] = 0.1; p.PredictionProbabilities[3] = 0.9;
        Assert.That(ErrorAwareMixture.Gap(p, 0), Is.EqualTo(0.9).Within(1e-15));
        Assert.That(ErrorAwareMixture.Gap(p, 1), Is.EqualTo(0.1).Within(1e-15));
        Assert.That(ErrorAwareMixture.SelectSlices(p, 2), Is.EqualTo(new[] { 0, 1 }));

        // Swapping the components swaps the ranking.
        var q = new MixtureParameters(2, 1, 2);
        p.LabelProbabilities.AsSpan(2, 2).CopyTo(q.LabelProbabilities.AsSpan(0, 2));
        p.LabelProbabilities.AsSpan(0, 2).CopyTo(q.LabelProbabilities.AsSpan(2, 2));
        p.PredictionProbabilities.AsSpan(2, 2).CopyTo(q.PredictionProbabilities.AsSpan(0, 2));
        p.PredictionProbabilities.AsSpan(0, 2).CopyTo(q.PredictionProbabilities.AsSpan(2, 2));
        Assert.That(ErrorAwareMixture.SelectSlices(q, 2), Is.EqualTo(new[] { 1, 0 }));
    }

    [Test]
    public void ConfusionInitialisationNeedsSquaredClassesComponents()
    {
        var data = FromPlanted(SlicingTestData.PlantedSlice(50, 1));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ErrorAwareMixture.InitialResponsibilities(data, new MixtureSettings(3, 1, 1), new Random(1)));
        Assert.That(ex!.Message, Does.Contain("at least 4 components").And.Contain("found 3"));
        var resp = ErrorAwareMixture.InitialResponsibilities(data, new MixtureSettings(4, 1, 1, ConfusionNoise: 0), new Random(1));
        // Row 0's responsibilities are the outer product y ⊗ ŷ, flattened (label-major).
        var expected = new[] { data.Labels[0] * data.Predictions[0], data.Labels[0] * data.Predictions[1], data.Labels[1] * data.Predictions[0], data.Labels[1] * data.Predictions[1] };
        Assert.That(resp.AsSpan(0, 4).ToArray(), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void PlantedFalseNegativeSliceIsFoundWithErrorWeights()
    {
        double ApOfFirstSlice(double weight, int seed)
        {
            var val = SlicingTestData.PlantedSlice(2000, seed);
            var test = SlicingTestData.PlantedSlice(2000, seed + 100);
            var method = new DominoSliceDiscovery("d", new DominoEstimator.Options { NumberOfComponents = 8, PcaComponents = null, LabelWeight = weight, PredictionWeight = weight });
            var scores = method.FitPredict(ToData(val), ToData(test), 3, seed);
            return SliceDiscoveryMetrics.AveragePrecision(test.Slice, scores.Select(r => r[0]).ToArray());
        }
        foreach (int seed in new[] { 1, 2, 3 })
        {
            double withErrors = ApOfFirstSlice(10, seed), plain = ApOfFirstSlice(0, seed);
            Assert.That(withErrors, Is.GreaterThanOrEqualTo(0.99), $"seed {seed}");
            Assert.That(withErrors, Is.GreaterThanOrEqualTo(plain), $"seed {seed}");
        }
    }

    [Test]
    public void EigenDecompositionReconstructsASymmetricMatrix()
    {
        int n = 40;
        var rng = new Random(3);
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++)
                a[i * n + j] = a[j * n + i] = rng.NextDouble() * 2 - 1;
        var copy = (double[])a.Clone();
        var (values, vectors) = SymmetricEigen.Decompose(copy, n);
        for (int r = 0; r < n; r++)
        {
            if (r > 0)
                Assert.That(values[r], Is.LessThanOrEqualTo(values[r - 1]));
            for (int i = 0; i < n; i++)
            {
                double av = 0;
                for (int j = 0; j < n; j++)
                    av += a[i * n + j] * vectors[r * n + j];
                Assert.That(av, Is.EqualTo(values[r] * vectors[r * n + i]).Within(1e-10), $"(A v)[{i}] of eigenpair {r}");
            }
            for (int s = 0; s <= r; s++)
            {
                double dot = 0;
                for (int j = 0; j < n; j++)
                    dot += vectors[r * n + j] * vectors[s * n + j];
                Assert.That(dot, Is.EqualTo(r == s ? 1.0 : 0.0).Within(1e-10), $"v{r} · v{s}");
            }
        }
    }

    [Test]
    public void PcaRecoversAPlantedSubspaceAndItsVariances()
    {
        // Rows = mean + 3 a u + 1 b v with a, b ~ N(0, 1): two components with variances 9 and 1 along u and v.
        int n = 4000, d = 10;
        var rng = new Random(11);
        var u = new double[d];
        var v = new double[d];
        u[2] = 0.6; u[7] = 0.8;
        v[0] = 1;
        var x = new float[n * d];
        for (int i = 0; i < n; i++)
        {
            double a = SlicingTestData.Gaussian(rng), b = SlicingTestData.Gaussian(rng);
            for (int j = 0; j < d; j++)
                x[i * d + j] = (float)(j + 3 * a * u[j] + b * v[j]);
        }
        var pca = PrincipalComponents.Fit(x, n, d, 2);
        Assert.That(Math.Abs(Dot(pca.Components.AsSpan(0, d).ToArray(), u)), Is.EqualTo(1).Within(1e-6));
        Assert.That(Math.Abs(Dot(pca.Components.AsSpan(d, d).ToArray(), v)), Is.EqualTo(1).Within(1e-6));
        Assert.That(pca.ExplainedVariances[0], Is.EqualTo(9).Within(0.6));
        Assert.That(pca.ExplainedVariances[1], Is.EqualTo(1).Within(0.1));
        var projected = pca.Project(x, n);
        Assert.That(Enumerable.Range(0, n).Average(i => projected[i * 2]), Is.EqualTo(0).Within(1e-5));
    }

    internal static SliceDiscoveryData ToData(SlicingTestData.Planted p) =>
        new(p.X, p.D, p.Y.Select(y => y ? 1 : 0).ToArray(), p.P.SelectMany(q => new[] { 1 - q, q }).ToArray(), 2);

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static double RandIndex(int[] a, int[] b)
    {
        int agree = 0, pairs = 0;
        for (int i = 0; i < a.Length; i++)
        {
            for (int j = i + 1; j < a.Length; j++)
            {
                pairs++;
                if ((a[i] == a[j]) == (b[i] == b[j]))
                    agree++;
            }
        }
        return (double)agree / pairs;
    }
}
