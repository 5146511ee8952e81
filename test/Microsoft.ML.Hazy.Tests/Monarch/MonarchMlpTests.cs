using Microsoft.ML.Hazy.Layers.Monarch;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Monarch;

internal static class MonarchOptions
{
    public static MlpTrainer.Options Monarch(int blocks = 2, double densifyAfter = 0)
    {
        var o = Blobs.SmallOptions();
        o.MonarchBlocks = blocks;
        o.DensifyAfterFraction = densifyAfter;
        return o;
    }
}

[TestFixture]
public sealed class MonarchMlpMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.MulticlassClassification.Trainers.HazyMlp(MonarchOptions.Monarch());

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Blobs.Keyed(ml, Blobs.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Blobs.Keyed(ml, Blobs.Make(30, 1, classes: 1));
}

[TestFixture]
public sealed class MonarchReverseSparsificationBinaryConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.BinaryClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml) =>
        ml.Hazy().BinaryClassification.Mlp(MonarchOptions.Monarch(densifyAfter: 0.5));

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) =>
        Blobs.WithLabel(ml, Blobs.Make(rows, seed), nameof(Blobs.Row.IsPositive));

    protected override IDataView CreateSingleClassData(MLContext ml) =>
        Blobs.WithLabel(ml, Blobs.Make(30, 1).Select(r => { r.IsPositive = true; return r; }), nameof(Blobs.Row.IsPositive));
}

[TestFixture]
public sealed class MonarchFineTuneMulticlassConformanceTests : TrainerConformanceTests
{
    protected override PredictionKind Kind => PredictionKind.MulticlassClassification;

    protected override IEstimator<HazyPredictionTransformer> CreateTrainer(MLContext ml)
    {
        var dense = ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions()).Fit(CreateTrainingData(ml));
        return ml.Hazy().MulticlassClassification.MonarchFineTune(dense, monarchBlocks: 2, numberOfEpochs: 2, learningRate: 5e-3);
    }

    protected override IDataView CreateTrainingData(MLContext ml, int rows = 240, int seed = 1) => Blobs.Keyed(ml, Blobs.Make(rows, seed));

    protected override IDataView CreateSingleClassData(MLContext ml) => Blobs.Keyed(ml, Blobs.Make(30, 1, classes: 1));
}

public sealed class MonarchMlpTests
{
    private static MlpNetwork Network(int monarchBlocks) =>
        new(20, new[] { 32, 16 }, 3, MlpActivation.Gelu, 0.1, layerNorm: true, monarchBlocks);

    [Test]
    public void DensifyLeavesScoresUnchanged()
    {
        manual_seed(1);
        using var sparse = Network(4);
        sparse.eval();
        Assert.That(sparse.modules().OfType<MonarchLinear>().Count(), Is.EqualTo(2));
        using var dense = sparse.Densify();
        Assert.That(dense.modules().OfType<MonarchLinear>(), Is.Empty);
        using var x = randn(50, 20);
        using var a = sparse.forward(x);
        using var b = dense.forward(x);
        Assert.That(MonarchLinearTests.MaxAbsDiff(a, b), Is.LessThan(1e-5));
    }

    [Test]
    public void ProjectingADensifiedMonarchNetworkIsExact()
    {
        manual_seed(2);
        using var sparse = Network(4);
        sparse.eval();
        using var dense = sparse.Densify();
        using var again = dense.ToMonarch(4);
        again.eval();
        using var x = randn(50, 20);
        using var a = sparse.forward(x);
        using var b = again.forward(x);
        Assert.That(MonarchLinearTests.MaxAbsDiff(a, b), Is.LessThan(1e-4));
    }

    [Test]
    public void MonarchOptionShrinksTheHiddenLayers()
    {
        using var dense = Network(0);
        using var sparse = Network(4);
        long Count(nn.Module m) => m.parameters().Sum(p => p.numel());
        // 20→32: in_blk 5, out_blk 8 → (4,5,5)+(4,8,5) = 260 weights vs 640; 32→16: (4,4,8)+(4,4,4) = 192 vs 512.
        Assert.That(Count(dense) - Count(sparse), Is.EqualTo(640 - 260 + 512 - 192));
    }

    [Test]
    public void ReverseSparsificationEndsDenseWithTheFullHistory()
    {
        var ml = new MLContext(3);
        var data = Blobs.Keyed(ml, Blobs.Make(240, 1));
        var options = MonarchOptions.Monarch(densifyAfter: 0.5);
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);
        Assert.That(model.Network.modules().OfType<MonarchLinear>(), Is.Empty);
        Assert.That(model.TrainingHistory.Select(e => e.Epoch), Is.EqualTo(new[] { 1, 2, 3, 4 }));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(data));
        Assert.That(metrics.MicroAccuracy, Is.GreaterThan(0.8));
    }

    [Test]
    public void FineTuningProjectsWithoutChangingTheDenseModel()
    {
        var ml = new MLContext(4);
        var data = Blobs.Keyed(ml, Blobs.Make(240, 1));
        var options = Blobs.SmallOptions();
        options.HiddenLayers = new[] { 32 };
        using var dense = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);
        var before = dense.Network.parameters().Select(p => p.detach().clone()).ToArray();
        using var sparse = ml.Hazy().MulticlassClassification.MonarchFineTune(dense, monarchBlocks: 4, numberOfEpochs: 1).Fit(data);
        Assert.That(sparse.Network.modules().OfType<MonarchLinear>().Count(), Is.EqualTo(1));
        var after = dense.Network.parameters().ToArray();
        for (int i = 0; i < before.Length; i++)
            Assert.That(MonarchLinearTests.MaxAbsDiff(before[i], after[i]), Is.EqualTo(0));
        Assert.That(ml.MulticlassClassification.Evaluate(sparse.Transform(data)).MicroAccuracy, Is.GreaterThan(0.8));
    }

    [Test]
    public void BadOptionsAreRefused()
    {
        var ml = new MLContext(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyMlp(MonarchOptions.Monarch(blocks: -1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyMlp(MonarchOptions.Monarch(blocks: 0, densifyAfter: 0.5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyMlp(MonarchOptions.Monarch(densifyAfter: 1)));
    }
}
