using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>The step budget (MinimumSteps, MaximumSteps) and the automatic validation split (ValidationFraction).</summary>
public sealed class TrainingBudgetTests
{
    [TestCase(10, 25, 0, 100, 64, 13)] // 2 steps an epoch: 13 epochs reach 26 ≥ 25 steps
    [TestCase(20, 25, 0, 100, 64, 20)] // already enough epochs
    [TestCase(10, 0, 7, 100, 64, 3)] // 3 epochs = 6 steps ≤ 7
    [TestCase(10, 0, 1, 100, 64, 1)] // never below one epoch
    [TestCase(1, 300, 0, 100, 16, 43)] // 7 steps an epoch
    [TestCase(1, 300, 0, 10, 64, 300)] // one batch of all 10 rows per epoch
    public void EpochsMeetTheStepBounds(int epochs, int minimumSteps, int maximumSteps, long rows, int batchSize, int expected) =>
        Assert.That(TrainingBudget.Epochs(epochs, minimumSteps, maximumSteps, rows, batchSize), Is.EqualTo(expected));

    [Test]
    public void LoopTakesAtLeastTheMinimumSteps()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        options.BatchSize = 64;
        options.MinimumSteps = 9;
        long steps = 0;
        options.StepObserver = _ => steps++;
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(100, 1)));
        // 100 rows in batches of 64 make 2 steps an epoch, so 5 epochs are the fewest that take 9 steps.
        Assert.That(steps, Is.EqualTo(10));
        Assert.That(model.TrainingHistory, Has.Count.EqualTo(5));
        Assert.That(options.NumberOfEpochs, Is.EqualTo(1), "The caller's options are not changed.");
    }

    [Test]
    public void BadStepBoundsAndFractionsThrowNamingTheOption()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(30, 1));
        foreach (var (configure, name) in new (Action<HazyTrainerOptions>, string)[]
        {
            (o => o.MinimumSteps = -1, "MinimumSteps"),
            (o => o.MaximumSteps = -5, "MaximumSteps"),
            (o => o.ValidationFraction = 1, "ValidationFraction"),
            (o => o.ValidationFraction = double.NaN, "ValidationFraction"),
        })
        {
            var options = Blobs.SmallOptions();
            configure(options);
            var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data));
            Assert.That(ex!.Message, Does.Contain(name));
        }
    }

    [Test]
    public void HoldOutIsStratifiedAndDeterministicForASeed()
    {
        // 10 classes: class c has 10 + c rows, so round(0.2 · n) is 2 for n = 10..12 and 3 for n = 13..19.
        var strata = Enumerable.Range(0, 10).SelectMany(c => Enumerable.Repeat((ulong)c, 10 + c)).OrderBy(s => (s * 7919) % 13).ToArray();
        var first = ValidationSplit.HoldOut(strata, 0.2, seed: 5);
        for (int c = 0; c < 10; c++)
        {
            int n = 10 + c;
            int held = Enumerable.Range(0, strata.Length).Count(i => strata[i] == (ulong)c && first[i]);
            Assert.That(held, Is.EqualTo((int)Math.Round(0.2 * n, MidpointRounding.AwayFromZero)), $"class {c}");
        }
        Assert.That(ValidationSplit.HoldOut(strata, 0.2, seed: 5), Is.EqualTo(first));
        Assert.That(ValidationSplit.HoldOut(strata, 0.2, seed: 6), Is.Not.EqualTo(first));
        // A class with one row keeps it for training.
        Assert.That(ValidationSplit.HoldOut(new ulong[] { 0, 0, 0, 0, 1 }, 0.5, seed: 1)[4], Is.False);
    }

    [Test]
    public void AutomaticSplitHoldsOutRowsAndKeepsTheBestEpochsWeights()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(100, 3));
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 6;
        options.LearningRate = 0.2; // large steps, so the validation loss need not fall every epoch
        options.BatchSize = 16;
        options.ValidationFraction = 0.2;
        options.MinimumRowsForValidationSplit = 50;
        long steps = 0;
        options.StepObserver = _ => steps++;
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);

        // 34 / 33 / 33 rows per class: round(0.2 · n) = 7 of each held out, 79 rows left, 5 steps an epoch.
        Assert.That(steps, Is.EqualTo(6 * 5));
        Assert.That(model.TrainingHistory.Select(e => e.ValidationLoss), Has.All.Not.Null);

        var labels = data.GetColumn<uint>("Label").Select(l => (ulong)l).ToArray();
        var holdOut = ValidationSplit.HoldOut(labels, 0.2, model.Seed);
        Assert.That(holdOut.Count(h => h), Is.EqualTo(21));
        var heldOut = new RowSubsetDataView(data, holdOut, true);
        var scores = model.ScoreWithTorch(heldOut);
        var heldLabels = labels.Where((_, i) => holdOut[i]).ToArray();
        double loss = scores.Select((p, i) => -Math.Log(p[heldLabels[i] - 1])).Average();
        double best = model.TrainingHistory.Min(e => e.ValidationLoss!.Value);
        TestContext.Out.WriteLine($"Validation losses {string.Join(", ", model.TrainingHistory.Select(e => e.ValidationLoss!.Value.ToString("G5")))}; held-out loss of the model {loss:G5}.");
        // The loop's loss is a float32 mean per batch; softmax and log here are double: 1e-4 covers float32 rounding of a loss near 1.
        Assert.That(loss, Is.EqualTo(best).Within(1e-4 * Math.Max(1, best)));
    }

    [Test]
    public void NoSplitBelowTheRowThreshold()
    {
        var ml = new MLContext(1);
        var options = Blobs.SmallOptions();
        options.ValidationFraction = 0.2; // MinimumRowsForValidationSplit stays 1,000
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(60, 1)));
        Assert.That(model.TrainingHistory.Select(e => e.ValidationLoss), Has.All.Null);
    }
}
