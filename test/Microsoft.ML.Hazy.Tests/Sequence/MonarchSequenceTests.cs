using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Sequence.Attention;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Sequence;

internal static class MonarchSequenceOptions
{
    /// <summary>The small S4D or Transformer configuration of the sequence tests with Monarch projections.</summary>
    public static SequenceTrainer.Options Small(SequenceBackbone backbone, int blocks = 4, bool bidirectional = false)
    {
        var options = backbone == SequenceBackbone.S4D ? Waves.SmallOptions(bidirectional) : TransformerSetup.Small(bidirectional);
        options.MonarchBlocks = blocks;
        return options;
    }
}

[TestFixture]
public sealed class MonarchS4DMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazySequence(MonarchSequenceOptions.Small(SequenceBackbone.S4D));

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Waves.Keyed(ml, Waves.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Waves.Keyed(ml, Waves.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class MonarchTransformerRegressionConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.Regression;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.Regression.Trainers.HazySequence(MonarchSequenceOptions.Small(SequenceBackbone.Transformer, blocks: 2, bidirectional: true));

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Waves.WithLabel(ml, Waves.Make(rows, seed), nameof(Waves.Row.Target));

    protected override IDataView CreateSingleClassData(MLContext ml) => throw new NotSupportedException();
}

public sealed class MonarchSequenceTests
{
    private static HazyPredictionTransformer Fit(SequenceTrainer.Options options, int rows = 60)
    {
        var ml = new MLContext(1);
        return ml.MulticlassClassification.Trainers.HazySequence(options).Fit(Waves.Keyed(ml, Waves.Make(rows, 1)));
    }

    private static long Parameters(nn.Module module) => module.parameters().Sum(p => p.numel());

    [TestCase(SequenceBackbone.S4D, 1)]
    [TestCase(SequenceBackbone.Transformer, 6)]
    public void ProjectionsAreMonarchWithFewerParametersWhileEncoderAndDecoderStayDense(SequenceBackbone backbone, int perBlock)
    {
        var dense = MonarchSequenceOptions.Small(backbone, blocks: 0);
        var sparse = MonarchSequenceOptions.Small(backbone, blocks: 4);
        dense.ModelDimension = sparse.ModelDimension = 16;
        dense.NumberOfEpochs = sparse.NumberOfEpochs = 1;
        using var denseModel = Fit(dense);
        using var sparseModel = Fit(sparse);
        var monarch = sparseModel.Network.modules().OfType<MonarchLinear>().ToArray();
        Assert.That(monarch, Has.Length.EqualTo(perBlock * sparse.NumberOfLayers));
        Assert.That(monarch.Select(m => m.Blocks), Is.All.EqualTo(4));
        Assert.That(denseModel.Network.modules().OfType<MonarchLinear>(), Is.Empty);
        var children = sparseModel.Network.named_children().ToDictionary(c => c.name, c => c.module);
        Assert.That(children["encoder"], Is.InstanceOf<Linear>());
        Assert.That(children["decoder"], Is.InstanceOf<Linear>());
        Assert.That(Parameters(sparseModel.Network), Is.LessThan(Parameters(denseModel.Network)));
    }

    [Test]
    public void BlocksAreCappedAtTheSmallerWidth()
    {
        var options = MonarchSequenceOptions.Small(SequenceBackbone.S4D, blocks: 64);
        options.NumberOfEpochs = 1;
        using var model = Fit(options);
        Assert.That(model.Network.modules().OfType<MonarchLinear>().Select(m => m.Blocks), Is.All.EqualTo(options.ModelDimension));
    }

    [TestCase(SequenceBackbone.S4D)]
    [TestCase(SequenceBackbone.Transformer)]
    public void VariableLengthBatchedExportEqualsTorchSharp(SequenceBackbone backbone)
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazySequence(MonarchSequenceOptions.Small(backbone, blocks: 2, bidirectional: true))
            .Fit(Waves.Keyed(ml, Waves.MakeVariable(90, 1)));
        var test = Waves.Keyed(ml, Waves.MakeVariable(20, 2));
        var torchScores = model.ScoreWithTorch(test, batchSize: 8);
        var onnx = ConformanceHelpers.ReadScores(model.Transform(test));
        for (int i = 0; i < onnx.Length; i++)
            ConformanceHelpers.AssertClose(onnx[i], torchScores[i], 1e-4, $"row {i}");
        Waves.AssertBatchedExportMatches(model, test, torchScores);
    }

    [Test]
    public void StreamingEqualsFullSequenceWithMonarchProjections()
    {
        using var model = Fit(MonarchSequenceOptions.Small(SequenceBackbone.S4D), rows: 120);
        var network = (SequenceNetwork)model.Network;
        Assert.That(network.modules().OfType<MonarchLinear>().Count(), Is.EqualTo(2));
        var series = Waves.Series(new Random(9), 1, 200, 1.3f);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = tensor(series, new long[] { 1, 200, Waves.Channels });
        var hidden = network.Hidden(x, null);
        using (var state = network.CreateStreamState(1))
        {
            for (int t = 0; t < 200; t++)
                S4DLayerTests.AssertClose(state.Step(x[TensorIndex.Colon, t]).Hidden, hidden[TensorIndex.Colon, t], 1e-5, $"hidden state at step {t}");
        }

        using var predictor = new SequenceStreamingPredictor(model);
        var afterFifty = predictor.Append(series.AsSpan(0, 50 * Waves.Channels));
        S4DLayerTests.AssertClose(tensor(afterFifty), nn.functional.softmax(network.forward(x.narrow(1, 0, 50)), 1)[0], 1e-5, "score after 50 steps");
        float[] last = afterFifty;
        for (int t = 50; t < 200; t++)
            last = predictor.Step(series.AsSpan(t * Waves.Channels, Waves.Channels));
        S4DLayerTests.AssertClose(tensor(last), nn.functional.softmax(network.forward(x), 1)[0], 1e-5, "score after 200 steps");
    }

    [Test]
    public void NegativeBlocksAreRefusedByName()
    {
        var ml = new MLContext(1);
        var options = MonarchSequenceOptions.Small(SequenceBackbone.Transformer, blocks: -1);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazySequence(options));
        Assert.That(ex!.Message, Does.Contain("MonarchBlocks"));
    }
}
