using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Slicing;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Slicing;

/// <summary>Domino at the edges: cancellation inside the PCA, non-finite embeddings at scoring, huge finite embeddings.</summary>
public sealed class DominoReliabilityTests
{
    private static DominoEstimator.Options BinaryOptions(int? pca, CancellationToken cancellation = default) => new()
    {
        PredictionColumnName = "Probability",
        NumberOfComponents = 8,
        NumberOfSlices = 3,
        PcaComponents = pca,
        Seed = 1,
        CancellationToken = cancellation,
    };

    [Test]
    public void EigenDecompositionObservesCancellation()
    {
        const int n = 40;
        var rng = new Random(2);
        var matrix = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j <= i; j++)
                matrix[i * n + j] = matrix[j * n + i] = rng.NextDouble();
        }
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var ex = Assert.Catch<OperationCanceledException>(() => SymmetricEigen.Decompose((double[])matrix.Clone(), n, cts.Token));
        Assert.That(ex!.StackTrace, Does.Contain(nameof(SymmetricEigen)));
        // Without a cancelled token the same matrix decomposes.
        Assert.That(SymmetricEigen.Decompose((double[])matrix.Clone(), n).Values, Has.Length.EqualTo(n));
    }

    [Test]
    public void CancelledFitStopsWithinThePca()
    {
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(200, 3);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Catch<OperationCanceledException>(() => PrincipalComponents.Fit(planted.X, planted.Rows, planted.D, 4, cts.Token));
        Assert.Catch<OperationCanceledException>(() => ml.Hazy().Slicing.Domino(BinaryOptions(pca: 4, cts.Token)).Fit(planted.ToDataView(ml)));
    }

    [TestCase(4)]
    [TestCase(null)]
    public void NonFiniteEmbeddingAtScoringGivesNaNProbabilitiesAndAMissingSlice(int? pca)
    {
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(300, 5);
        var model = ml.Hazy().Slicing.Domino(BinaryOptions(pca)).Fit(planted.ToDataView(ml));

        var test = SlicingTestData.PlantedSlice(4, 6);
        test.X[1 * test.D + 3] = float.NaN;
        test.X[2 * test.D] = float.PositiveInfinity;
        var scored = model.Transform(test.ToDataView(ml));
        var probabilities = scored.GetColumn<VBuffer<float>>("SliceProbabilities").Select(v => v.DenseValues().ToArray()).ToArray();
        var slices = scored.GetColumn<uint>("Slice").ToArray();

        foreach (int row in new[] { 1, 2 })
        {
            Assert.That(probabilities[row].All(float.IsNaN), Is.True, $"row {row}: {string.Join(", ", probabilities[row])}");
            Assert.That(slices[row], Is.EqualTo(0u), $"row {row} has no slice");
        }
        foreach (int row in new[] { 0, 3 })
        {
            Assert.That(probabilities[row].All(float.IsFinite), Is.True, $"row {row}");
            Assert.That(slices[row], Is.InRange(1u, 3u), $"row {row}");
        }
    }

    [TestCase(4)]
    [TestCase(null)]
    public void HugeFiniteEmbeddingsGiveFiniteSlices(int? pca)
    {
        // 1e30 · x: every square overflows float, but the values are finite and their slices are those of x.
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(300, 7);
        var scaled = planted with { X = planted.X.Select(v => v * 1e30f).ToArray() };
        Assert.That(scaled.X.All(float.IsFinite), Is.True);

        DominoTransformer? model = null;
        try
        {
            model = ml.Hazy().Slicing.Domino(BinaryOptions(pca)).Fit(scaled.ToDataView(ml));
        }
        catch (InvalidOperationException ex)
        {
            Assert.That(ex.Message, Does.Contain("'Features'"), "a refusal names the column");
            return;
        }
        var scored = model.Transform(scaled.ToDataView(ml));
        var probabilities = scored.GetColumn<VBuffer<float>>("SliceProbabilities").SelectMany(v => v.DenseValues()).ToArray();
        var slices = scored.GetColumn<uint>("Slice").ToArray();
        Assert.That(probabilities.All(float.IsFinite), Is.True);
        Assert.That(slices.All(s => s >= 1 && s <= 3), Is.True);

        // Scaling by a power of ten leaves the posterior of the unscaled embeddings (up to rounding), so the slices agree.
        var reference = ml.Hazy().Slicing.Domino(BinaryOptions(pca)).Fit(planted.ToDataView(ml)).Transform(planted.ToDataView(ml));
        var referenceSlices = reference.GetColumn<uint>("Slice").ToArray();
        double agreement = slices.Zip(referenceSlices, (a, b) => a == b ? 1.0 : 0.0).Average();
        Assert.That(agreement, Is.GreaterThan(0.95));
    }
}
