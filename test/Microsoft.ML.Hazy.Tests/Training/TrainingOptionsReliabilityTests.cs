using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Training;

[TestFixture]
public sealed class TrainingOptionsReliabilityTests
{
    [TestCase(nameof(HazyTrainerOptions.WeightDecay))]
    [TestCase(nameof(HazyTrainerOptions.GradientClipNorm))]
    [TestCase(nameof(HazyTrainerOptions.WarmupFraction))]
    [TestCase(nameof(MlpTrainer.Options.DropoutRate))]
    public void NaNOptionIsRejectedNamingIt(string option)
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        typeof(MlpTrainer.Options).GetProperty(option)!.SetValue(options, double.NaN);

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(40, 1))));

        Assert.That(ex!.Message, Does.Contain(option));
    }

    [Test]
    public void NegativeGradientClipNormIsRejected()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.GradientClipNorm = -1;

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(40, 1))));

        Assert.That(ex!.Message, Does.Contain(nameof(HazyTrainerOptions.GradientClipNorm)));
    }

    [Test]
    public void NaNDropoutIsRejectedByEveryTrainerWithDropout()
    {
        var ml = new MLContext(1);
        var cnn = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyCnn(new CnnTrainer.Options { Height = 16, Width = 16, DropoutRate = double.NaN }));
        var sequence = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyS4D(new SequenceTrainer.Options { DropoutRate = double.NaN }));

        Assert.That(cnn!.Message, Does.Contain("DropoutRate"));
        Assert.That(sequence!.Message, Does.Contain("DropoutRate"));
    }

    [Test]
    public void HugeRegressionTargetsAskToNormaliseTheLabelNotToLowerTheLearningRate()
    {
        var ml = new MLContext(1);
        var rows = Blobs.Make(40, 1);
        foreach (var r in rows)
            r.Target = 1e25f;
        var options = Blobs.SmallOptions();
        options.Seed = 3;

        var ex = Assert.Throws<InvalidOperationException>(() =>
            ml.Regression.Trainers.HazyMlp(options).Fit(Blobs.WithLabel(ml, rows, nameof(Blobs.Row.Target))));

        Assert.That(ex!.Message, Does.Contain("loss").And.Contain("1E+25").And.Contain("normalise the label"));
        Assert.That(ex.Message, Does.Not.Contain("learning rate"));
    }

    [Test]
    public void DivergingTrainingStillSuggestsALowerLearningRate()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.Seed = 3;
        options.HiddenLayers = Array.Empty<int>();
        options.LayerNorm = false;
        options.Optimizer = HazyOptimizer.Sgd;
        options.LearningRate = 1e4;
        options.NumberOfEpochs = 20;

        var ex = Assert.Throws<InvalidOperationException>(() =>
            ml.Regression.Trainers.HazyMlp(options).Fit(Blobs.WithLabel(ml, Blobs.Make(200, 1), nameof(Blobs.Row.Target))));

        Assert.That(ex!.Message, Does.Contain("lower the learning rate"));
    }

    [Test]
    public void BatchSizeLargerThanTheDataIsCappedToTheRowCount()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.BatchSize = int.MaxValue;
        options.NumberOfEpochs = 2;
        options.ValidationSet = Blobs.Keyed(ml, Blobs.Make(10, 2));
        var steps = new List<TrainingProgress>();
        options.Progress = new SyncProgress(p => { if (!p.EpochCompleted) steps.Add(p); });

        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(20, 1)));

        Assert.That(steps.Select(p => (p.Epoch, p.Step, p.StepsPerEpoch)), Is.EqualTo(new[] { (1, 1, 1), (2, 1, 1) }));
        Assert.That(model.TrainingHistory.Select(e => double.IsFinite(e.TrainLoss) && e.ValidationLoss is double v && double.IsFinite(v)), Has.All.True);
    }

    private sealed class SyncProgress : IProgress<TrainingProgress>
    {
        private readonly Action<TrainingProgress> _report;

        public SyncProgress(Action<TrainingProgress> report) => _report = report;

        public void Report(TrainingProgress value) => _report(value);
    }
}
