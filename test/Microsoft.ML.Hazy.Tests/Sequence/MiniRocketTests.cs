using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Sequence.MiniRocket;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>
/// MiniRocket: dilations and biases against the paper's formulas, PPV features against a direct float64 computation, determinism
/// per seed, variable-length rows, and bad input.
/// </summary>
public sealed class MiniRocketTests
{
    private sealed class SeriesRow
    {
        public float[] Features = Array.Empty<float>();
    }

    [Test]
    public void DilationsFollowTheReferenceFormula()
    {
        // np.unique(floor(logspace(0, log2(149/8), 32, base=2))) with counts × 119/32 and the remainder shared out, computed in Python.
        var (dilations, features) = MiniRocketKernels.FitDilations(150, 119, 32);
        Assert.That(dilations, Is.EqualTo(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 18 }));
        Assert.That(features, Is.EqualTo(new[] { 30, 15, 12, 12, 4, 8, 8, 4, 4, 4, 3, 3, 3, 3, 3, 3 }));
        var (shortDilations, shortFeatures) = MiniRocketKernels.FitDilations(24, 119, 32);
        Assert.That(shortDilations, Is.EqualTo(new[] { 1, 2 }));
        Assert.That(shortFeatures, Is.EqualTo(new[] { 79, 40 }));
        Assert.That(MiniRocketKernels.KernelCount, Is.EqualTo(84));
    }

    [Test]
    public void BiasesAndPpvFeaturesMatchADirectComputation()
    {
        // Integer-valued series: every convolution value is an exact integer in float64, so comparisons are exact.
        var rand = new Random(3);
        var train = Enumerable.Range(0, 40).Select(_ => (float)rand.Next(-5, 6)).ToArray();
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = train } });
        var model = ml.Transforms.MiniRocket(numberOfFeatures: 84 * 6, seed: 9).Fit(data);
        var kernels = model.Kernels;
        Assert.That(model.FeatureCount, Is.EqualTo(504));
        Assert.That(model.ReferenceLength, Is.EqualTo(40));

        var test = Enumerable.Range(0, 23).Select(_ => (float)rand.Next(-5, 6)).ToArray();
        var features = model.Featurize(test);
        double phi = (Math.Sqrt(5) + 1) / 2;
        int feature = 0;
        for (int d = 0; d < kernels.Dilations.Length; d++)
        {
            int dilation = kernels.Dilations[d];
            for (int k = 0; k < 84; k++)
            {
                var weights = Enumerable.Repeat(-1.0, 9).ToArray();
                foreach (int p in MiniRocketKernels.TwoPositions[k])
                    weights[p] = 2;
                Assert.That(weights.Sum(), Is.EqualTo(0), "MiniRocket kernels sum to zero");
                var trainConvolution = Direct(train, weights, dilation);
                var sorted = trainConvolution.OrderBy(v => v).ToArray();
                var testConvolution = Direct(test, weights, dilation);
                int padding = 4 * dilation;
                bool validOnly = (d % 2 + k) % 2 == 1 && test.Length > 2 * padding;
                var counted = validOnly ? testConvolution[padding..^padding] : testConvolution;
                for (int f = 0; f < kernels.FeaturesPerDilation[d]; f++, feature++)
                {
                    double q = (feature + 1) * phi % 1;
                    double position = q * (sorted.Length - 1);
                    int lo = (int)Math.Floor(position);
                    double bias = sorted[lo] + (sorted[Math.Min(lo + 1, sorted.Length - 1)] - sorted[lo]) * (position - lo);
                    Assert.That(kernels.Biases[feature], Is.EqualTo((float)bias), $"bias of feature {feature} (dilation {dilation}, kernel {k})");
                    double ppv = counted.Count(v => v > kernels.Biases[feature]) / (double)counted.Length;
                    Assert.That(features[feature], Is.EqualTo(ppv).Within(1e-6), $"PPV of feature {feature} (dilation {dilation}, kernel {k})");
                }
            }
        }
        Assert.That(feature, Is.EqualTo(504));
    }

    [Test]
    public void FittingIsDeterministicForASeedAndRowsOfAnyLengthScore()
    {
        var ml = new MLContext(1);
        var rows = Waves.MakeVariable(20, 1, minLength: 3, maxLength: 40).Select(r => new SeriesRow { Features = r.Features }).ToArray();
        var data = ml.Data.LoadFromEnumerable(rows);
        float[][] Features(int seed) =>
            ml.Transforms.MiniRocket(channels: 2, numberOfFeatures: 840, seed: seed).Fit(data).Transform(data)
                .GetColumn<float[]>("Features").ToArray();
        var a = Features(5);
        var b = Features(5);
        var c = Features(6);
        Assert.That(b, Is.EqualTo(a), "same seed, same features");
        Assert.That(c, Is.Not.EqualTo(a), "another seed draws other channel subsets and bias rows");
        Assert.That(a.All(f => f.Length == 840 && f.All(v => v >= 0 && v <= 1)), Is.True, "840 PPV values in [0, 1] per row");
    }

    [Test]
    public void MiniRocketWithAStockLinearTrainerSeparatesTheWaves()
    {
        var ml = new MLContext(1);
        var train = Waves.Keyed(ml, Waves.MakeVariable(60, 1));
        var test = Waves.Keyed(ml, Waves.MakeVariable(30, 2));
        var model = ml.Transforms.MiniRocket(channels: 2, numberOfFeatures: 840, seed: 1)
            .Append(ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy())
            .Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.That(metrics.MicroAccuracy, Is.GreaterThan(0.8), "three sine frequencies (chance 0.33) on 30 rows of 6 to 20 steps");
    }

    [Test]
    public void BadInputIsRefusedNamingRowColumnExpectedAndActual()
    {
        var ml = new MLContext(1);
        var odd = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = new float[] { 1, 2, 3, 4 } }, new SeriesRow { Features = new float[] { 1, 2, 3 } } });
        var e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.MiniRocket(channels: 2, numberOfFeatures: 84, seed: 1).Fit(odd));
        Assert.That(e!.Message, Does.Contain("Row 1").And.Contain("'Features'").And.Contain("3 values").And.Contain("2 channel"));

        var empty = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = new float[] { 1, 2 } }, new SeriesRow() });
        e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.MiniRocket(numberOfFeatures: 84, seed: 1).Fit(empty));
        Assert.That(e!.Message, Does.Contain("Row 1").And.Contain("0 values"));

        var nan = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = new[] { 1f, float.NaN, 3f } } });
        e = Assert.Throws<InvalidOperationException>(() => ml.Transforms.MiniRocket(numberOfFeatures: 84, seed: 1).Fit(nan));
        Assert.That(e!.Message, Does.Contain("Row 0").And.Contain("NaN").And.Contain("step 1"));

        var good = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = new float[] { 1, 2, 3, 4, 5 } } });
        var model = ml.Transforms.MiniRocket(numberOfFeatures: 84, seed: 1).Fit(good);
        e = Assert.Throws<InvalidOperationException>(() => model.Transform(nan).GetColumn<float[]>("Features").ToArray());
        Assert.That(e!.Message, Does.Contain("Row 0").And.Contain("NaN"));

        var wrongType = ml.Data.LoadFromEnumerable(new[] { new { Features = 1f } });
        var typeError = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.MiniRocket(numberOfFeatures: 84).Fit(wrongType));
        Assert.That(typeError!.Message, Does.Contain("'Features'").And.Contain("expected a vector of Single"));

        var optionError = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.MiniRocket(numberOfFeatures: 10));
        Assert.That(optionError!.Message, Does.Contain("NumberOfFeatures").And.Contain("84"));
    }

    [Test]
    public void SavingSaysItIsNotPersistable()
    {
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(new[] { new SeriesRow { Features = new float[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } } });
        var model = ml.Transforms.MiniRocket(numberOfFeatures: 84, seed: 1).Fit(data);
        using var stream = new MemoryStream();
        var e = Assert.Throws<NotSupportedException>(() => ml.Model.Save(model, data.Schema, stream));
        Assert.That(e!.Message, Does.Contain("MiniRocketTransformer cannot be saved"));
    }

    /// <summary>C[t] = Σ_j w_j x[t + (j − 4)·d] with zeros outside the series, in float64.</summary>
    private static double[] Direct(float[] x, double[] weights, int dilation)
    {
        var c = new double[x.Length];
        for (int t = 0; t < x.Length; t++)
        {
            for (int j = 0; j < 9; j++)
            {
                int s = t + (j - 4) * dilation;
                if (s >= 0 && s < x.Length)
                    c[t] += weights[j] * x[s];
            }
        }
        return c;
    }
}
