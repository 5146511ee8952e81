using Microsoft.ML.Hazy.Heads;
using System.Reflection;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>
/// A Hazy model inside ML.NET's own tools: permutation feature importance, cross-validation, the MLContext's cancellation,
/// and the thread count option.
/// </summary>
[NonParallelizable]
public sealed class HostIntegrationTests
{
    /// <summary>Reports synchronously on the training thread (<see cref="Progress{T}"/> would post to the thread pool).</summary>
    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    private sealed class TwoFeatureRow
    {
        public string Class = "";
        public bool IsPositive;
        public float Target;
        [VectorType(2)]
        public float[] Features = Array.Empty<float>();
    }

    /// <summary>Slot 0 decides the label; slot 1 is independent noise of the same scale.</summary>
    private static TwoFeatureRow[] InformativeAndNoise(int rows, int seed)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, rows).Select(_ =>
        {
            float x = (float)(rand.NextDouble() * 4 - 2), noise = (float)(rand.NextDouble() * 4 - 2);
            return new TwoFeatureRow { Class = x > 0 ? "right" : "left", IsPositive = x > 0, Target = 2 * x, Features = new[] { x, noise } };
        }).ToArray();
    }

    private static MlpTrainer.Options PfiOptions(string label) => new()
    {
        LabelColumnName = label,
        HiddenLayers = new[] { 16 },
        NumberOfEpochs = 15,
        BatchSize = 16,
        LearningRate = 1e-2,
        DropoutRate = 0,
        Seed = 3,
    };

    [TestCase(PredictionKind.MulticlassClassification)]
    [TestCase(PredictionKind.BinaryClassification)]
    [TestCase(PredictionKind.Regression)]
    public void PermutationFeatureImportanceRanksTheInformativeFeatureAboveTheNoise(PredictionKind kind)
    {
        var ml = new MLContext(1);
        var rows = InformativeAndNoise(240, 5);
        var raw = ml.Data.LoadFromEnumerable(rows);
        IDataView data = kind switch
        {
            PredictionKind.MulticlassClassification => ml.Transforms.Conversion.MapValueToKey("Label", nameof(TwoFeatureRow.Class)).Fit(raw).Transform(raw),
            PredictionKind.BinaryClassification => ml.Transforms.CopyColumns("Label", nameof(TwoFeatureRow.IsPositive)).Fit(raw).Transform(raw),
            _ => ml.Transforms.CopyColumns("Label", nameof(TwoFeatureRow.Target)).Fit(raw).Transform(raw),
        };
        var tasks = kind switch
        {
            PredictionKind.MulticlassClassification => ml.Hazy().MulticlassClassification,
            PredictionKind.BinaryClassification => ml.Hazy().BinaryClassification,
            _ => ml.Hazy().Regression,
        };
        using var model = tasks.Mlp(PfiOptions("Label")).Fit(data);
        Assert.That(model.Model.Network, Is.SameAs(model.Network));
        Assert.That(model.FeatureColumnType, Is.EqualTo(new VectorDataViewType(NumberDataViewType.Single, 2)));

        // The importance of a slot is how much the metric worsens when that slot is shuffled across rows. Shuffling the
        // label-deciding slot leaves a coin flip (accuracy about 0.5, R² about -1); shuffling pure noise changes little.
        double[] loss;
        switch (kind)
        {
            case PredictionKind.MulticlassClassification:
                loss = ml.MulticlassClassification.PermutationFeatureImportance(model, data, permutationCount: 3)
                    .Select(s => -s.MicroAccuracy.Mean).ToArray();
                break;
            case PredictionKind.BinaryClassification:
                loss = ml.BinaryClassification.PermutationFeatureImportance(model, data, permutationCount: 3)
                    .Select(s => -s.Accuracy.Mean).ToArray();
                break;
            default:
                loss = ml.Regression.PermutationFeatureImportance(model, data, permutationCount: 3)
                    .Select(s => -s.RSquared.Mean).ToArray();
                break;
        }

        TestContext.Out.WriteLine($"{kind}: importance of the informative slot {loss[0]:F3}, of the noise slot {loss[1]:F3}");
        Assert.That(loss, Has.Length.EqualTo(2));
        Assert.That(loss[0], Is.GreaterThan(0.25), "shuffling the informative slot must cost much of the metric");
        Assert.That(Math.Abs(loss[1]), Is.LessThan(0.1), "shuffling the noise slot must cost little");
        Assert.That(loss[0], Is.GreaterThan(loss[1]));
        if (kind == PredictionKind.Regression)
        {
            // For a near-exact fit of y = 2x, shuffling x gives E[(y - y')²] = 2 Var(y) with y' independent of y: R² = -1,
            // an importance of 2 from a baseline R² of 1. The tolerance covers the fit's error and 3 shuffles of 240 rows.
            Assert.That(loss[0], Is.EqualTo(2).Within(0.4));
        }
    }

    /// <summary>ML.NET keeps <c>MLContext.CancelExecution</c> internal (AutoML calls it to stop a trial); tests reach it the same way.</summary>
    private static void CancelExecution(MLContext ml) =>
        typeof(MLContext).GetMethod("CancelExecution", BindingFlags.Instance | BindingFlags.NonPublic)!.Invoke(ml, null);

    [TestCase(true)]
    [TestCase(false)]
    public void CancellingTheMLContextFromTheProgressCallbackStopsFitBeforeTheNextStep(bool hazyCatalog)
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(64, 1));
        int reports = 0;
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 3;
        options.Progress = new SyncProgress(_ =>
        {
            reports++;
            CancelExecution(ml);
        });
        var trainer = hazyCatalog ? ml.Hazy().MulticlassClassification.Mlp(options) : ml.MulticlassClassification.Trainers.HazyMlp(options);

        Assert.Throws<OperationCanceledException>(() => trainer.Fit(data));
        Assert.That(reports, Is.EqualTo(1), "the check before the second step must stop training");
    }

    [Test]
    public void CancellingAfterANetworkSwitchStopsFitAndFreesBothNetworksCleanly()
    {
        // Reverse sparsification switches networks after epoch 2; cancelling in epoch 3 fails the run after the first
        // network was already freed by the switch, so the run's cleanup meets it again and must not throw over the cancellation.
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.MonarchBlocks = 2;
        options.DensifyAfterFraction = 0.5;
        options.Progress = new SyncProgress(p =>
        {
            if (p.Epoch == 3)
                CancelExecution(ml);
        });
        Assert.Throws<OperationCanceledException>(() => ml.Hazy().MulticlassClassification.Mlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(64, 1))));
    }

    [Test]
    public void BuildingATrainerDoesNotDrawFromTheContextsRandomStream()
    {
        // The seed a Fit without Options.Seed uses comes from the MLContext's random stream; building another trainer
        // first (which registers a host to watch the context's cancellation) must not move that stream.
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        var alone = new MLContext(7);
        using var first = alone.Hazy().MulticlassClassification.Mlp(options).Fit(Blobs.Keyed(alone, Blobs.Make(32, 1)));
        var after = new MLContext(7);
        _ = after.MulticlassClassification.Trainers.HazyMlp(options);
        _ = after.Hazy().Regression.Mlp(options);
        using var second = after.Hazy().MulticlassClassification.Mlp(options).Fit(Blobs.Keyed(after, Blobs.Make(32, 1)));
        Assert.That(second.Seed, Is.EqualTo(first.Seed));
    }

    [Test]
    public void TheOptionsTokenStillCancels()
    {
        var ml = new MLContext(1);
        using var source = new CancellationTokenSource();
        var options = Blobs.SmallOptions();
        options.CancellationToken = source.Token;
        options.Progress = new SyncProgress(_ => source.Cancel());
        Assert.Throws<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(64, 1))));
    }

    private static bool IsFreed(Tensor parameter) => parameter.IsInvalid;

    [Test]
    public void CrossValidateOnEveryTaskReturnsEveryFoldModelAndDisposingThemFreesTheirNetworks()
    {
        var ml = new MLContext(1);
        var rows = Blobs.Make(90, 1);
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 2;
        options.BatchSize = 8;
        var keyed = Blobs.Keyed(ml, rows);

        var multiclass = ml.MulticlassClassification.CrossValidate(keyed, ml.MulticlassClassification.Trainers.HazyMlp(options), numberOfFolds: 3);
        var binary = ml.BinaryClassification.CrossValidate(Blobs.WithLabel(ml, rows, nameof(Blobs.Row.IsPositive)),
            ml.BinaryClassification.Trainers.HazyMlp(options), numberOfFolds: 2);
        // A pipeline: the fold models are TransformerChains that hold the Hazy model.
        var regression = ml.Regression.CrossValidate(ml.Data.LoadFromEnumerable(rows),
            ml.Transforms.CopyColumns("Label", nameof(Blobs.Row.Target)).Append(ml.Regression.Trainers.HazyMlp(options)), numberOfFolds: 2);

        Assert.That(multiclass.Select(r => r.Fold), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(binary.Select(r => r.Fold), Is.EqualTo(new[] { 0, 1 }));
        Assert.That(regression.Select(r => r.Fold), Is.EqualTo(new[] { 0, 1 }));
        TestContext.Out.WriteLine("accuracy " + string.Join(", ", multiclass.Select(r => r.Metrics.MicroAccuracy.ToString("F3"))) + "; "
            + string.Join(", ", binary.Select(r => r.Metrics.Accuracy.ToString("F3"))) + "; RMSE " + string.Join(", ", regression.Select(r => r.Metrics.RootMeanSquaredError.ToString("F3"))));
        Assert.That(multiclass.Select(r => r.Metrics.MicroAccuracy), Has.All.GreaterThan(0.5), "3 balanced classes: chance is 1/3");
        Assert.That(binary.Select(r => r.Metrics.Accuracy), Has.All.GreaterThan(0.5));
        Assert.That(regression.Select(r => r.Metrics.RootMeanSquaredError), Has.All.Matches<double>(double.IsFinite));

        var models = multiclass.Select(r => r.Model).Concat(binary.Select(r => r.Model)).Concat(regression.Select(r => r.Model)).ToArray();
        var hazy = models.Select(m => m as HazyPredictionTransformer ?? ((TransformerChain<HazyPredictionTransformer>)m).LastTransformer).ToArray();
        // Every fold trained its own network; CrossValidate keeps each fold model in its result and drops none.
        Assert.That(hazy.Select(h => h.Network).Distinct().Count(), Is.EqualTo(7));
        var parameters = hazy.Select(h => h.Network.parameters().First()).ToArray();
        Assert.That(parameters.Select(IsFreed), Has.All.False);

        foreach (var model in models)
            ((IDisposable)model).Dispose();

        Assert.That(parameters.Select(IsFreed), Has.All.True, "disposing a fold model (or the chain holding it) frees its network");
    }

    [Test]
    public void NumberOfThreadsHoldsDuringFitOnlyAndTheModelScoresAndSavesWithIt()
    {
        int before = get_num_threads();
        int wanted = before == 1 ? 2 : 1;
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(48, 1));
        var seen = new List<int>();
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        options.NumberOfThreads = wanted;
        options.Progress = new SyncProgress(_ => seen.Add(get_num_threads()));

        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);

        Assert.That(seen, Is.Not.Empty.And.All.EqualTo(wanted));
        Assert.That(get_num_threads(), Is.EqualTo(before));
        var onnx = ConformanceHelpers.ReadScores(model.Transform(data));
        var torch = model.ScoreWithTorch(data);
        for (int i = 0; i < onnx.Length; i++)
            Assert.That(onnx[i], Is.EqualTo(torch[i]).Within(1e-5));

        // The scoring chain reads its graph from a file when given thread counts; a saved model must still carry the graph.
        using var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        stream.Position = 0;
        var loaded = ml.Model.Load(stream, out _);
        Assert.That(ConformanceHelpers.ReadScores(loaded.Transform(data)), Is.EqualTo(onnx));
    }
}
