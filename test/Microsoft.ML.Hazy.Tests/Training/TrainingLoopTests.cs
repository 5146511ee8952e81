using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Training;

public sealed class TrainingLoopTests
{
    [Test]
    public void ScheduleWarmsUpLinearlyThenFollowsHalfCosine()
    {
        // 10 warm-up steps of 110: step s < 10 gives (s+1)/10; then 0.5(1 + cos(pi * (s-10)/100)).
        Assert.That(TrainingLoop.LearningRateFactor(0, 10, 110, LearningRateSchedule.Cosine), Is.EqualTo(0.1).Within(1e-12));
        Assert.That(TrainingLoop.LearningRateFactor(9, 10, 110, LearningRateSchedule.Cosine), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(TrainingLoop.LearningRateFactor(10, 10, 110, LearningRateSchedule.Cosine), Is.EqualTo(1.0).Within(1e-12));
        Assert.That(TrainingLoop.LearningRateFactor(60, 10, 110, LearningRateSchedule.Cosine), Is.EqualTo(0.5).Within(1e-12));
        Assert.That(TrainingLoop.LearningRateFactor(85, 10, 110, LearningRateSchedule.Cosine), Is.EqualTo(0.5 * (1 + Math.Cos(Math.PI * 0.75))).Within(1e-12));
        Assert.That(TrainingLoop.LearningRateFactor(85, 10, 110, LearningRateSchedule.Constant), Is.EqualTo(1.0));
    }

    [Test]
    public void ParameterGroupsGetTheirOwnLearningRateAndWeightDecay()
    {
        using var model = nn.Sequential(("encoder", nn.Linear(4, 3)), ("ssm", nn.Linear(3, 2)));
        var options = new MlpTrainer.Options { LearningRate = 0.01, WeightDecay = 0.05 };
        options.ParameterGroups.Add(new ParameterGroupOptions { NamePrefix = "ssm.", LearningRate = 1e-3, WeightDecay = 0 });
        using var optimizer = TrainingLoop.CreateOptimizer(model, options);
        var groups = optimizer.Groups;
        Assert.That(groups, Has.Count.EqualTo(2));
        Assert.That(groups.Select(g => g.LearningRate), Is.EqualTo(new[] { 0.01, 1e-3 }));
        Assert.That(groups.Select(g => g.WeightDecay), Is.EqualTo(new[] { 0.05, 0.0 }));
        Assert.That(groups.Select(g => g.Parameters.Count), Is.EqualTo(new[] { 2, 2 }));

        // Weight decay 0 really leaves a zero-gradient parameter alone, decay shrinks the others.
        var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        foreach (var p in model.parameters())
            p.grad = zeros_like(p);
        optimizer.Step();
        foreach (var (name, p) in model.named_parameters())
        {
            bool changed = !p.detach().allclose(before[name], 0, 0);
            Assert.That(changed, Is.EqualTo(!name.StartsWith("ssm.")), name);
        }
    }

    [Test]
    public void CancellationStopsTraining()
    {
        var ml = new MLContext(1);
        using var cts = new CancellationTokenSource();
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 50;
        options.CancellationToken = cts.Token;
        options.Progress = new SyncProgress(p => { if (p.Step == 3) cts.Cancel(); });
        var data = Blobs.Keyed(ml, Blobs.Make(200, 1));
        Assert.Throws<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data));
    }

    [Test]
    public void ProgressAndLogReportEveryEpoch()
    {
        var ml = new MLContext(1);
        var log = new List<string>();
        ml.Log += (_, e) => { lock (log) log.Add(e.Message); };
        var reports = new List<TrainingProgress>();
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 3;
        options.Progress = new SyncProgress(reports.Add);
        options.ValidationSet = Blobs.Keyed(ml, Blobs.Make(60, 2));
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(160, 1)));
        var epochs = reports.Where(r => r.EpochCompleted).ToList();
        Assert.That(epochs.Select(r => r.Epoch), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(epochs.All(r => r.ValidationMetric is > 0 and <= 1), Is.True);
        Assert.That(reports.Count(r => !r.EpochCompleted), Is.EqualTo(3 * 10)); // 160 rows / batch 16
        Assert.That(log.Count(m => m.Contains("Epoch ") && m.Contains("validation accuracy")), Is.EqualTo(3));
        Assert.That(model.TrainingHistory, Has.Count.EqualTo(3));
        Assert.That(model.TrainingHistory[^1].ValidationMetric, Is.GreaterThan(0.8));
    }

    [Test]
    public void EarlyStoppingKeepsTheBestEpoch()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 40;
        options.LearningRate = 0.05;
        options.HiddenLayers = new[] { 64 };
        options.DropoutRate = 0;
        options.EarlyStoppingPatience = 2;
        // Few noisy training rows: validation loss soon rises, so training stops before 40 epochs.
        options.ValidationSet = Blobs.Keyed(ml, Blobs.Make(300, 5));
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(24, 3)));
        var history = model.TrainingHistory;
        Assert.That(history.Count, Is.LessThan(40));
        int best = history.Select((e, i) => (e.ValidationLoss!.Value, i)).Min().i;
        Assert.That(history.Count - 1 - best, Is.EqualTo(2), "stopped two epochs after the best");

        // The returned network is the best epoch's: its validation loss equals the best one.
        var valid = options.ValidationSet;
        var scores = model.ScoreWithTorch(valid);
        var labels = valid.GetColumn<uint>("Label").ToArray();
        double loss = scores.Select((s, i) => -Math.Log(s[labels[i] - 1])).Average();
        Assert.That(loss, Is.EqualTo(history[best].ValidationLoss!.Value).Within(1e-4));
    }

    [Test]
    public void InvalidOptionsThrowNamingTheOption()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(40, 1));
        var options = Blobs.SmallOptions();
        options.LearningRate = -1;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data));
        Assert.That(ex!.Message, Does.Contain("LearningRate"));
    }

    [Test]
    public void MissingKeyLabelThrowsNamingTheColumn()
    {
        var ml = new MLContext(1);
        // Keys fitted on two classes: the third class maps to the missing key 0.
        var rows = Blobs.Make(60, 1);
        var keys = ml.Transforms.Conversion.MapValueToKey("Label", nameof(Blobs.Row.Class))
            .Fit(ml.Data.LoadFromEnumerable(rows.Where(r => r.Class != "bird")));
        var data = keys.Transform(ml.Data.LoadFromEnumerable(rows));
        var ex = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions()).Fit(data));
        Assert.That(ex!.Message, Does.Contain("'Label'").And.Contain("missing key"));
    }

    [Test]
    public void ValidationLabelWithOtherClassesThrows()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.ValidationSet = Blobs.Keyed(ml, Blobs.Make(40, 2, classes: 4));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(60, 1))));
        Assert.That(ex!.Message, Does.Contain("'Label'").And.Contain("validation"));
    }

    [Test]
    public void GpuRequestedWithoutCudaFollowsFallbackPolicy()
    {
        if (cuda.is_available())
            Assert.Ignore("This machine has CUDA; the test covers machines without it.");
        var data = Blobs.Keyed(new MLContext(1), Blobs.Make(40, 1));
        var strict = new MLContext(1) { GpuDeviceId = 0, FallbackToCpu = false };
        var ex = Assert.Throws<InvalidOperationException>(() => strict.Hazy().MulticlassClassification.Mlp(Blobs.SmallOptions()).Fit(data));
        Assert.That(ex!.Message, Does.Contain("GpuDeviceId is 0").And.Contain("FallbackToCpu is false"));

        var lenient = new MLContext(1) { GpuDeviceId = 0, FallbackToCpu = true };
        var warnings = new List<string>();
        lenient.Log += (_, e) => { if (e.Message.Contains("falling back")) lock (warnings) warnings.Add(e.Message); };
        using var model = lenient.Hazy().MulticlassClassification.Mlp(Blobs.SmallOptions()).Fit(data);
        Assert.That(model.Network.parameters().First().device.type, Is.EqualTo(DeviceType.CPU));
        Assert.That(warnings, Is.Not.Empty);
    }

    [Test]
    public void MlpLearnsTheBlobs()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions()).Fit(Blobs.Keyed(ml, Blobs.Make(300, 1)));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(Blobs.Keyed(ml, Blobs.Make(300, 9))));
        Assert.That(metrics.MicroAccuracy, Is.GreaterThan(0.9));
        var names = ml.Transforms.Conversion.MapKeyToValue("Name", "PredictedLabel")
            .Fit(model.Transform(Blobs.Keyed(ml, Blobs.Make(3, 9)))).Transform(model.Transform(Blobs.Keyed(ml, Blobs.Make(3, 9))))
            .GetColumn<string>("Name").ToArray();
        Assert.That(names, Is.SubsetOf(new[] { "cat", "dog", "bird" }));
        Assert.That(model.ClassNames, Is.EqualTo(new[] { "cat", "dog", "bird" }));
    }

    [Test]
    public void BinaryAndRegressionWorkWithStockEvaluators()
    {
        var ml = new MLContext(1);
        using var binary = ml.BinaryClassification.Trainers.HazyMlp(Blobs.SmallOptions())
            .Fit(Blobs.WithLabel(ml, Blobs.Make(300, 1), nameof(Blobs.Row.IsPositive)));
        var b = ml.BinaryClassification.Evaluate(binary.Transform(Blobs.WithLabel(ml, Blobs.Make(300, 9), nameof(Blobs.Row.IsPositive))));
        Assert.That(b.Accuracy, Is.GreaterThan(0.9));
        Assert.That(b.AreaUnderRocCurve, Is.GreaterThan(0.95));

        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 30;
        using var regression = ml.Regression.Trainers.HazyMlp(options).Fit(Blobs.WithLabel(ml, Blobs.Make(400, 1), nameof(Blobs.Row.Target)));
        var r = ml.Regression.Evaluate(regression.Transform(Blobs.WithLabel(ml, Blobs.Make(300, 9), nameof(Blobs.Row.Target))));
        Assert.That(r.RSquared, Is.GreaterThan(0.9));
    }

    [TestCase(HazyOptimizer.AdamW)]
    [TestCase(HazyOptimizer.Adam)]
    [TestCase(HazyOptimizer.Sgd)]
    public void OptimizerStepFollowsItsUpdateRule(HazyOptimizer kind)
    {
        // One parameter p = 2 with gradient g = 0.5 (loss = 0.5·p... d/dp = 0.5), lr 0.1, weight decay 0.01, two steps.
        using var p = new TorchSharp.Modules.Parameter(tensor(new[] { 2.0f }));
        var group = new ParameterGroup("g", new[] { p }, 0.1, 0.01);
        using var optimizer = new ParameterOptimizer(kind, new[] { group });
        double w = 2, m = 0, v = 0, b = 0;
        for (int t = 1; t <= 2; t++)
        {
            optimizer.ZeroGrad();
            (p * 0.5f).sum().backward();
            optimizer.Step();
            double g = 0.5;
            if (kind == HazyOptimizer.AdamW)
                w *= 1 - 0.1 * 0.01;
            else
                g += 0.01 * w;
            if (kind == HazyOptimizer.Sgd)
            {
                b = 0.9 * b + g;
                w -= 0.1 * (g + 0.9 * b);
            }
            else
            {
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                double mHat = m / (1 - Math.Pow(0.9, t)), vHat = v / (1 - Math.Pow(0.999, t));
                w -= 0.1 * mHat / (Math.Sqrt(vHat) + 1e-8);
            }
            Assert.That(p.item<float>(), Is.EqualTo(w).Within(1e-5), $"step {t}");
        }
    }

    [Test]
    public void StreamingShuffleIsASeededPermutation()
    {
        var ml = new MLContext(1);
        // A view that cannot shuffle itself: rows come from a lazy enumerable.
        IEnumerable<Blobs.Row> Rows() { foreach (var r in Blobs.Make(20000, 1)) yield return r; }
        var data = Blobs.Keyed(ml, Rows());
        Assert.That(data.CanShuffle, Is.False);
        var batcher = new Microsoft.ML.Hazy.Data.DataViewBatcher(data, "Features", "Label", Microsoft.ML.Hazy.Data.LabelKind.Key);
        float[] FirstValues(int? seed) => batcher.GetBatches(1000, seed, CPU)
            .SelectMany(b => { using (b) return b.Features.select(1, 0).data<float>().ToArray(); }).ToArray();
        var ordered = FirstValues(null);
        var a = FirstValues(5);
        var again = FirstValues(5);
        var other = FirstValues(6);
        Assert.That(a, Is.EquivalentTo(ordered));
        Assert.That(a, Is.Not.EqualTo(ordered));
        Assert.That(again, Is.EqualTo(a));
        Assert.That(other, Is.Not.EqualTo(a));
    }

    /// <summary>Progress&lt;T&gt; posts to the thread pool; tests need the reports in order, on the training thread.</summary>
    private sealed class SyncProgress : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> _report;

        public SyncProgress(Action<TrainingProgress> report) => _report = report;

        public void Report(TrainingProgress value) => _report(value);
    }
}
