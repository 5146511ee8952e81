using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.Attention;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence.Attention;

internal static class TransformerSetup
{
    /// <summary>A small Transformer configuration for CI: width 8, two heads of 4.</summary>
    public static SequenceTrainer.Options Small(bool bidirectional = false)
    {
        var options = Waves.SmallOptions(bidirectional);
        options.Backbone = SequenceBackbone.Transformer;
        options.PreNorm = true;
        options.LearningRate = 3e-3;
        options.Transformer = new TransformerOptions { NumberOfHeads = 2, FeedForwardMultiplier = 2 };
        return options;
    }
}

[TestFixture]
public sealed class TransformerMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazySequence(TransformerSetup.Small());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Waves.Keyed(ml, Waves.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Waves.Keyed(ml, Waves.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class TransformerRegressionConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Regression;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var options = TransformerSetup.Small(bidirectional: true);
        options.PreNorm = false;
        return ml.Regression.Trainers.HazySequence(options);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Waves.WithLabel(ml, Waves.Make(rows, seed), nameof(Waves.Row.Target));

    protected override IDataView CreateSingleClassData(MLContext ml) => throw new NotSupportedException();
}

public sealed class TransformerBackboneTests
{
    [Test]
    public void LearnsTheWaves()
    {
        var ml = new MLContext(1);
        var options = TransformerSetup.Small(bidirectional: true);
        options.NumberOfEpochs = 15;
        options.LearningRate = 1e-2;
        options.ModelDimension = 16;
        using var model = ml.MulticlassClassification.Trainers.HazySequence(options).Fit(Waves.Keyed(ml, Waves.Make(300, 1)));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(Waves.Keyed(ml, Waves.Make(150, 7))));
        Assert.That(metrics.MicroAccuracy, Is.GreaterThan(0.8));
    }

    [Test]
    public void VariableLengthRowsScoreAlikeInTorchSharpMlNetAndBatchedOnnx()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazySequence(TransformerSetup.Small(bidirectional: true))
            .Fit(Waves.Keyed(ml, Waves.MakeVariable(120, 1)));
        var test = Waves.Keyed(ml, Waves.MakeVariable(30, 2));
        var torchScores = model.ScoreWithTorch(test, batchSize: 8);
        var onnx = ConformanceHelpers.ReadScores(model.Transform(test));
        for (int i = 0; i < onnx.Length; i++)
            ConformanceHelpers.AssertClose(onnx[i], torchScores[i], 1e-4, $"row {i}");

        // The batched export pads to the longest row; the attention mask keeps padded keys out.
        Waves.AssertBatchedExportMatches(model, test, torchScores);
    }

    [Test]
    public void CausalAttentionIgnoresLaterSteps()
    {
        TorchSharp.torch.manual_seed(3);
        using var layer = new SelfAttentionLayer(8, 2, 0, causal: true);
        layer.eval();
        using var x = TorchSharp.torch.randn(1, 10, 8);
        using var changed = x.clone();
        using (TorchSharp.torch.no_grad())
            changed.narrow(1, 6, 4).copy_(TorchSharp.torch.randn(1, 4, 8));
        using var a = layer.forward(x);
        using var b = layer.forward(changed);
        Assert.That(a.narrow(1, 0, 6).allclose(b.narrow(1, 0, 6), 1e-6, 1e-6), Is.True);
        Assert.That(a.allclose(b, 1e-3, 1e-3), Is.False);
    }

    [Test]
    public void HeadsMustSplitTheWidthEvenly()
    {
        var ml = new MLContext(1);
        var options = TransformerSetup.Small();
        options.Transformer.NumberOfHeads = 3;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazySequence(options).Fit(Waves.Keyed(ml, Waves.Make(30, 1))));
        Assert.That(ex!.Message, Does.Contain("NumberOfHeads"));
    }
}
