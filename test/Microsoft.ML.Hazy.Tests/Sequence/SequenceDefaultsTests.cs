using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>What the S4D short overload and the default options do without tuning: sizing, maximum length, clear errors, presets.</summary>
public sealed class SequenceDefaultsTests
{
    [Test]
    public void ZerosAreSizedToTheDataAndSetValuesAreKept()
    {
        var ml = new MLContext(1);
        var data = Waves.Keyed(ml, Waves.MakeVariable(100, 1, minLength: 500, maxLength: 600));
        var sized = SequenceSizing.Resolve(new SequenceTrainer.Options { Channels = Waves.Channels }, data, null);
        // 100 rows: batches of 16 and 3 blocks; more than 512 steps: width 64 / 2; epochs for 300 steps of 7 batches.
        Assert.That((sized.ModelDimension, sized.NumberOfLayers, sized.BatchSize, sized.NumberOfEpochs, sized.MinimumSteps, sized.ValidationFraction), Is.EqualTo((32, 3, 16, 1, 300, 0.1)));
        Assert.That(TrainingBudget.Epochs(sized.NumberOfEpochs, sized.MinimumSteps, 0, 100, sized.BatchSize), Is.EqualTo(43));

        var set = new SequenceTrainer.Options { Channels = Waves.Channels, ModelDimension = 24, NumberOfLayers = 2, BatchSize = 8, NumberOfEpochs = 5 };
        Assert.That(SequenceSizing.Resolve(set, data, null), Is.SameAs(set));
        var partly = SequenceSizing.Resolve(new SequenceTrainer.Options { Channels = Waves.Channels, ModelDimension = 24 }, Waves.Keyed(ml, Waves.Make(30, 1)), null);
        Assert.That((partly.ModelDimension, partly.NumberOfLayers, partly.BatchSize), Is.EqualTo((24, 3, 16)));
        Assert.That(SequenceSizing.For(20_000, 100), Is.EqualTo((128, 4, 32)));
    }

    [Test]
    public void ShortOverloadsMaximumLengthAcceptsLongerRows()
    {
        var ml = new MLContext(1);
        var trainer = ml.MulticlassClassification.Trainers.HazyS4D(channels: Waves.Channels, modelDimension: 8, numberOfLayers: 1, numberOfEpochs: 1,
            batchSize: 32, maximumLength: 100);
        using var model = trainer.Fit(Waves.Keyed(ml, Waves.MakeVariable(40, 1, maxLength: 12)));
        // Training rows have at most 12 steps; 100 steps × 2 channels pad to the 256-value contract.
        var longer = Waves.Keyed(ml, Waves.MakeVariable(3, 2, minLength: 100, maxLength: 100));
        Assert.That(ConformanceHelpers.ReadScores(model.Transform(longer)), Has.Length.EqualTo(3));
    }

    [Test]
    public void EvaluateShowsHazysMessageForATooLongRow()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(Waves.SmallOptions()).Fit(Waves.Keyed(ml, Waves.MakeVariable(60, 1, maxLength: 12)));
        // The model accepts 64 values (32 steps of 2 channels); row 1 has 33 steps.
        var rows = Waves.MakeVariable(5, 3, minLength: 8, maxLength: 12);
        rows[1] = Waves.MakeVariable(2, 4, minLength: 33, maxLength: 33)[1];
        var ex = Assert.Catch<Exception>(() => ml.MulticlassClassification.Evaluate(model.Transform(Waves.Keyed(ml, rows))));
        TestContext.Out.WriteLine(ex!.Message);
        Assert.That(ex.Message, Does.Contain("Column 'Features' row 1 ").And.Contain("66 values").And.Contain("at most 64").And.Contain("MaximumLength"));
        Assert.That(ex.Message, Does.Not.Contain("Splitter/consolidator"));
    }

    [Test]
    public void PresetsAreFreshOptionsTheTrainerAccepts()
    {
        var ml = new MLContext(1);
        var ucr = SequenceTrainer.Options.Presets.UcrClassification(channels: 12, maximumLength: 29);
        ucr.ModelDimension = 16;
        Assert.That(SequenceTrainer.Options.Presets.UcrClassification().ModelDimension, Is.EqualTo(64));
        Assert.That((ucr.Channels, ucr.MaximumLength, ucr.Bidirectional, ucr.MinimumSteps), Is.EqualTo((12, 29, true, 400)));
        Assert.DoesNotThrow(() => ml.MulticlassClassification.Trainers.HazyS4D(ucr));
        var image = SequenceTrainer.Options.Presets.SequentialImage(numberOfEpochs: 2);
        Assert.That((image.NumberOfEpochs, image.Normalization, image.PreNorm), Is.EqualTo((2, SequenceNormalization.BatchNorm, true)));
        Assert.DoesNotThrow(() => ml.MulticlassClassification.Trainers.HazyS4D(image));
    }
}
