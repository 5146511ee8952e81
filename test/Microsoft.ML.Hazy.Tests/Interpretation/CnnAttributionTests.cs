using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Tests.Cnn;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>Every gradient method on a trained Hazy CNN (Conv2d, BatchNorm2d, ReLU, Dropout2d, Linear), through the catalog.</summary>
public sealed class CnnAttributionTests
{
    private const int Size = BlobImages.Channels * BlobImages.Height * BlobImages.Width;
    private static MLContext _ml = null!;
    private static BlobImages.Row[] _rows = null!;
    private static IDataView _data = null!;
    private static HazyPredictionTransformer _model = null!;

    [OneTimeSetUp]
    public void Train()
    {
        _ml = new MLContext(5);
        _rows = BlobImages.Make(150, 3);
        _data = BlobImages.Keyed(_ml, _rows);
        _model = _ml.MulticlassClassification.Trainers.HazyCnn(BlobImages.SmallOptions()).Fit(_data);
    }

    [OneTimeTearDown]
    public void Dispose() => _model.Dispose();

    private static float[][] Attributions(GradientAttributionOptions options) =>
        _ml.Hazy().Interpretation.Attribution(_model, options).Fit(_data).Transform(_data).GetColumn<float[]>("Attribution").ToArray();

    [Test]
    public void EveryMethodRunsOnTheCnn()
    {
        foreach (var method in Enum.GetValues<GradientMethod>())
        {
            var a = Attributions(new GradientAttributionOptions { Method = method, SmoothGradSamples = 8, Steps = 16, DeepLiftShapBaselines = 5 });
            Assert.That(a, Has.Length.EqualTo(150), method.ToString());
            Assert.That(a.All(r => r.Length == Size && r.All(float.IsFinite)), Is.True, $"{method}: finite maps of {Size} values");
            Assert.That(a.Any(r => r.Any(v => v != 0)), Is.True, $"{method}: not all zero");
        }
    }

    [Test]
    public void DeepLiftIsCompleteOnTheCnn()
    {
        var a = Attributions(new GradientAttributionOptions { Method = GradientMethod.DeepLift, Baselines = new[] { BaselineKind.Zero } });
        var labels = _data.GetColumn<uint>("Label").ToArray();
        using var _ = no_grad();
        var x = tensor(_rows.SelectMany(r => r.Features).ToArray(), new long[] { 150, Size });
        var fx = _model.Network.forward(x).data<float>().ToArray();
        var f0 = _model.Network.forward(zeros(1, Size)).data<float>().ToArray();
        for (int i = 0; i < 150; i += 7)
        {
            int c = (int)labels[i] - 1;
            Assert.That(a[i].Sum(), Is.EqualTo(fx[i * 3 + c] - f0[c]).Within(1e-3 + 1e-3 * Math.Abs(fx[i * 3 + c])), $"row {i}");
        }
    }

    [Test]
    public void IntegratedGradientsConcentrateOnTheBlob()
    {
        // The class is where a bright 2×2 blob sits; the model should credit the blob's pixels far beyond their share.
        var a = Attributions(new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients, Baselines = new[] { BaselineKind.Zero } });
        double share = 0;
        for (int i = 0; i < 150; i++)
        {
            var x = _rows[i].Features;
            var blob = Enumerable.Range(0, Size).Where(j => x[j] > 0.7).ToArray();
            share += blob.Sum(j => Math.Abs(a[i][j])) / a[i].Sum(Math.Abs);
        }
        share /= 150;
        Assert.That(share, Is.GreaterThan(0.2), $"mean share of |IG| on the 4 blob pixels of {Size}: {share:F3}");
    }
}
