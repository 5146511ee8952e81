using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>The ML.NET surface: an <c>Attribution</c> column on scored data, and what cannot be done with it.</summary>
public sealed class AttributionTransformerTests
{
    private static MLContext _ml = null!;
    private static IDataView _data = null!;
    private static HazyPredictionTransformer _model = null!;

    [OneTimeSetUp]
    public void Train()
    {
        _ml = new MLContext(3);
        _data = Blobs.Keyed(_ml, Blobs.Make(120, 1));
        var options = Blobs.SmallOptions();
        options.LayerNorm = false;
        options.Activation = MlpActivation.Relu;
        _model = _ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(_data);
    }

    [OneTimeTearDown]
    public void Dispose() => _model.Dispose();

    private static (float[] Features, uint[] Labels, uint[] Predicted, float[][] Attributions) Read(IDataView view)
    {
        var rows = view.GetColumn<float[]>("Features").ToArray();
        return (rows.SelectMany(r => r).ToArray(), view.GetColumn<uint>("Label").ToArray(), view.GetColumn<uint>("PredictedLabel").ToArray(),
            view.GetColumn<float[]>("Attribution").ToArray());
    }

    [TestCase(AttributionTarget.TrueLabel)]
    [TestCase(AttributionTarget.PredictedLabel)]
    public void AddsTheAttributionOfEachRowsTarget(AttributionTarget target)
    {
        var scored = _model.Transform(_data);
        var explained = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.InputXGradient, target).Fit(scored).Transform(scored);
        Assert.That(explained.Schema["Attribution"].Type, Is.EqualTo(new VectorDataViewType(NumberDataViewType.Single, Blobs.Dimensions)));
        var (features, labels, predicted, attributions) = Read(explained);
        Assert.That(attributions, Has.Length.EqualTo(120));
        var keys = target == AttributionTarget.TrueLabel ? labels : predicted;
        var direct = new GradientAttribution(_model.Network, Blobs.Dimensions, new GradientAttributionOptions { Method = GradientMethod.InputXGradient })
            .Attribute(features, 120, keys.Select(k => (int)k - 1).ToArray());
        Assert.That(attributions.SelectMany(a => a), Is.EqualTo(direct).Within(1e-6));
    }

    [Test]
    public void FitComputesTheDataMeanBaseline()
    {
        var options = new GradientAttributionOptions { Method = GradientMethod.IntegratedGradients, Baselines = new[] { BaselineKind.DataMean }, Steps = 64 };
        var transformer = _ml.Hazy().Interpretation.Attribution(_model, options).Fit(_data);
        var (attributions, targets, rows) = transformer.Compute(_data);
        var features = _data.GetColumn<float[]>("Features").ToArray();
        var mean = Enumerable.Range(0, Blobs.Dimensions).Select(j => features.Average(r => r[j])).ToArray();
        // Completeness against the data mean: Σ IG = f(x) − f(mean), to the quadrature's accuracy.
        var scores = new TorchOutputs(_model).Logits(features.SelectMany(r => r).Concat(mean).ToArray(), rows + 1);
        for (int i = 0; i < rows; i += 17)
        {
            double expected = scores[i][targets[i]] - scores[rows][targets[i]];
            Assert.That(attributions.AsSpan(i * Blobs.Dimensions, Blobs.Dimensions).ToArray().Sum(), Is.EqualTo(expected).Within(1e-2 + 1e-2 * Math.Abs(expected)), $"row {i}");
        }
    }

    [Test]
    public void CannotBeSaved()
    {
        var transformer = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.Gradient).Fit(_data);
        using var stream = new MemoryStream();
        var e = Assert.Throws<NotSupportedException>(() => _ml.Model.Save(transformer, _data.Schema, stream))!;
        Assert.That(e.Message, Does.Contain("analysis tool"));
    }

    [Test]
    public void ModelsWithoutGradientsAreSentToTheModelAgnosticMethods()
    {
        var sdca = _ml.MulticlassClassification.Trainers.SdcaMaximumEntropy().Fit(_data);
        var e = Assert.Throws<NotSupportedException>(() => _ml.Hazy().Interpretation.Attribution(sdca, GradientMethod.Gradient))!;
        Assert.That(e.Message, Does.Contain("Occlusion").And.Contain("KernelShap"));
    }

    [Test]
    public void ModelAgnosticMethodsExplainStockModels()
    {
        var sdca = _ml.MulticlassClassification.Trainers.SdcaMaximumEntropy().Fit(_data);
        var scored = sdca.Transform(_data);
        var occlusion = new OcclusionAttribution.Options { Shape = new[] { Blobs.Dimensions }, WindowShape = new[] { 2 }, Strides = new[] { 1 } };
        var explained = _ml.Hazy().Interpretation.Occlusion(sdca, occlusion, AttributionTarget.PredictedLabel).Fit(scored).Transform(scored);
        var (features, _, predicted, attributions) = Read(explained);
        var direct = new OcclusionAttribution(new TransformerScoreFunction(sdca, "Features", Blobs.Dimensions), occlusion)
            .Attribute(features, 120, predicted.Select(k => (int)k - 1).ToArray());
        Assert.That(attributions.SelectMany(a => a), Is.EqualTo(direct).Within(1e-6));
        Assert.That(direct.Any(v => Math.Abs(v) > 1e-3), Is.True);

        // KernelSHAP through the catalog is exactly efficient: Σ φ = f(x) − f(0) for each row's true class.
        var shap = _ml.Hazy().Interpretation.KernelShap(sdca).Fit(scored).Transform(scored);
        var labels = shap.GetColumn<uint>("Label").ToArray();
        var phi = shap.GetColumn<float[]>("Attribution").ToArray();
        var score = new TransformerScoreFunction(sdca, "Features", Blobs.Dimensions);
        var fx = score.Score(features, 120);
        var f0 = score.Score(new float[Blobs.Dimensions], 1);
        for (int i = 0; i < 120; i += 13)
        {
            int c = (int)labels[i] - 1;
            Assert.That(phi[i].Sum(), Is.EqualTo(fx[i * 3 + c] - f0[c]).Within(1e-4), $"row {i}");
        }
    }

    [Test]
    public void BadTargetsAreNamed()
    {
        var unscored = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.Gradient, AttributionTarget.PredictedLabel).Fit(_data);
        var missing = Assert.Throws<ArgumentOutOfRangeException>(() => unscored.Transform(_data))!;
        Assert.That(missing.Message, Does.Contain("'PredictedLabel'").And.Contain("score the data"));

        var fixedOutOfRange = _ml.Hazy().Interpretation.Attribution(_model, new GradientAttributionOptions { Target = AttributionTarget.FixedClass, TargetClass = 3 });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => fixedOutOfRange.Fit(_data))!;
        Assert.That(e.Message, Does.Contain("3").And.Contain("3 output"));

        var rows = Blobs.Make(10, 4);
        rows[3].Features[5] = float.NaN;
        var withNaN = Blobs.Keyed(_ml, rows);
        var nan = Assert.Throws<ArgumentException>(() => _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.Gradient).Fit(_data).Compute(withNaN))!;
        Assert.That(nan.Message, Does.Contain("'Features'").And.Contain("row 3").And.Contain("slot 5"));

        var wrongSize = _ml.Transforms.Concatenate("Features", "Features", "Features").Fit(_data).Transform(_data);
        var fitted = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.Gradient).Fit(_data);
        var s = Assert.Throws<ArgumentOutOfRangeException>(() => fitted.Transform(wrongSize))!;
        Assert.That(s.Message, Does.Contain("'Features'").And.Contain("16").And.Contain("8 Single values"));
    }

    /// <summary>The network's logits, read independently of the attribution code.</summary>
    private sealed class TorchOutputs(HazyPredictionTransformer model)
    {
        public float[][] Logits(float[] rows, int count)
        {
            using var _ = TorchSharp.torch.no_grad();
            using var x = TorchSharp.torch.tensor(rows, new long[] { count, rows.Length / count });
            using var y = model.Network.forward(x);
            var flat = y.data<float>().ToArray();
            int k = flat.Length / count;
            return Enumerable.Range(0, count).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray();
        }
    }
}
