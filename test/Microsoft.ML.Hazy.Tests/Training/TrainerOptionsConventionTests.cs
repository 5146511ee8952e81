using Microsoft.ML.Hazy.Heads;
using System.Collections;
using System.Reflection;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Training;

/// <summary>
/// Options as ML.NET writes them: public properties (reflection-based tools see them), <c>Options.Defaults</c> shared by the
/// options and the short catalog overloads, and a check when the trainer is built.
/// </summary>
public sealed class TrainerOptionsConventionTests
{
    private static readonly Type[] OptionTypes =
    {
        typeof(MlpTrainer.Options), typeof(CnnTrainer.Options), typeof(SequenceTrainer.Options), typeof(MonarchFineTuneTrainer.Options),
        typeof(ParameterGroupOptions),
    };

    [Test]
    public void OptionsArePublicPropertiesNotFields()
    {
        foreach (var type in OptionTypes)
        {
            Assert.That(type.GetFields(BindingFlags.Public | BindingFlags.Instance), Is.Empty, type.FullName);
            Assert.That(type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite), Is.Not.Empty, type.FullName);
        }
        var names = typeof(MlpTrainer.Options).GetProperties().Select(p => p.Name).ToArray();
        Assert.That(names, Does.Contain(nameof(HazyTrainerOptions.BatchSize)).And.Contain(nameof(MlpTrainer.Options.HiddenLayers))
            .And.Contain(nameof(HazyTrainerOptions.NumberOfThreads)));
    }

    [Test]
    public void OptionsStartFromTheirDefaults()
    {
        var mlp = new MlpTrainer.Options();
        Assert.That(mlp.NumberOfEpochs, Is.EqualTo(MlpTrainer.Options.Defaults.NumberOfEpochs));
        Assert.That(mlp.LearningRate, Is.EqualTo(MlpTrainer.Options.Defaults.LearningRate));
        Assert.That(mlp.BatchSize, Is.EqualTo(MlpTrainer.Options.Defaults.BatchSize));
        Assert.That(mlp.HiddenLayers, Is.EqualTo(MlpTrainer.Options.Defaults.HiddenLayers));
        Assert.That(mlp.DropoutRate, Is.EqualTo(MlpTrainer.Options.Defaults.DropoutRate));
        Assert.That(mlp.NumberOfThreads, Is.Null);

        var cnn = new CnnTrainer.Options();
        Assert.That(cnn.LearningRate, Is.EqualTo(CnnTrainer.Options.Defaults.LearningRate).And.Not.EqualTo(HazyTrainerOptions.Defaults.LearningRate));
        Assert.That(cnn.Filters, Is.EqualTo(CnnTrainer.Options.Defaults.Filters));

        var sequence = new SequenceTrainer.Options();
        Assert.That(sequence.LearningRate, Is.EqualTo(SequenceTrainer.Options.Defaults.LearningRate));
        Assert.That(sequence.WeightDecay, Is.EqualTo(SequenceTrainer.Options.Defaults.WeightDecay));
        Assert.That(sequence.ModelDimension, Is.EqualTo(SequenceTrainer.Options.Defaults.ModelDimension));

        var fineTune = new MonarchFineTuneTrainer.Options();
        Assert.That(fineTune.NumberOfEpochs, Is.EqualTo(MonarchFineTuneTrainer.Options.Defaults.NumberOfEpochs));
        Assert.That(fineTune.MonarchBlocks, Is.EqualTo(MonarchFineTuneTrainer.Options.Defaults.MonarchBlocks));

        // The array defaults are fresh copies: changing one options object's layers leaves the next one's alone.
        mlp.HiddenLayers[0] = 1;
        Assert.That(new MlpTrainer.Options().HiddenLayers[0], Is.EqualTo(256));
    }

    private static object TrainerOptions(object trainer) =>
        trainer.GetType().BaseType!.GetProperty("TrainerOptions", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(trainer)!;

    /// <summary>Every public option of <paramref name="actual"/> equals the one of <paramref name="expected"/> (arrays by value).</summary>
    private static void AssertSameOptions(object actual, object expected)
    {
        foreach (var p in expected.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            object? a = p.GetValue(actual), e = p.GetValue(expected);
            if (a is IEnumerable ea && e is IEnumerable ee && a is not string)
                Assert.That(ea, Is.EqualTo(ee), p.Name);
            else if (p.PropertyType.IsValueType || a is string || a is null)
                Assert.That(a, Is.EqualTo(e), p.Name);
        }
    }

    [Test]
    public void ShortOverloadsBuildTheDefaultOptions()
    {
        var ml = new MLContext(1);
        AssertSameOptions(TrainerOptions(ml.MulticlassClassification.Trainers.HazyMlp()), new MlpTrainer.Options());
        AssertSameOptions(TrainerOptions(ml.Hazy().Regression.Mlp()), new MlpTrainer.Options());
        AssertSameOptions(TrainerOptions(ml.BinaryClassification.Trainers.HazyCnn(height: 8, width: 8)), new CnnTrainer.Options { Height = 8, Width = 8 });
        AssertSameOptions(TrainerOptions(ml.Hazy().MulticlassClassification.S4D()), new SequenceTrainer.Options());
        AssertSameOptions(TrainerOptions(ml.Regression.Trainers.HazyS4D()), new SequenceTrainer.Options());
    }

    private static readonly (string Option, object Value)[] BadValues =
    {
        (nameof(HazyTrainerOptions.BatchSize), 0),
        (nameof(HazyTrainerOptions.BatchSize), -8),
        (nameof(HazyTrainerOptions.NumberOfEpochs), 0),
        (nameof(HazyTrainerOptions.LearningRate), 0.0),
        (nameof(HazyTrainerOptions.LearningRate), double.PositiveInfinity),
        (nameof(HazyTrainerOptions.WeightDecay), -1e-3),
        (nameof(HazyTrainerOptions.WarmupFraction), 1.5),
        (nameof(HazyTrainerOptions.EarlyStoppingPatience), -1),
        (nameof(HazyTrainerOptions.GradientClipNorm), double.NaN),
        (nameof(HazyTrainerOptions.NumberOfThreads), 0),
        (nameof(MlpTrainer.Options.DropoutRate), 1.0),
        (nameof(MlpTrainer.Options.MonarchBlocks), -1),
    };

    [TestCaseSource(nameof(BadValues))]
    public void ABadOptionFailsWhenTheTrainerIsBuiltNamingTheOptionAndValue((string Option, object Value) bad)
    {
        var options = new MlpTrainer.Options();
        typeof(MlpTrainer.Options).GetProperty(bad.Option)!.SetValue(options, bad.Value);

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyMlp(options));

        Assert.That(ex!.ParamName, Is.EqualTo(bad.Option));
        Assert.That(ex.ActualValue, Is.EqualTo(bad.Value));
        Assert.That(ex.Message, Does.Contain("Options." + bad.Option));
    }

    [Test]
    public void EveryTrainerChecksTheSharedOptionsAtConstruction()
    {
        var ml = new MLContext(1);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().BinaryClassification.Cnn(new CnnTrainer.Options { Height = 8, Width = 8, BatchSize = 0 }))!.ParamName,
            Is.EqualTo("BatchSize"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Regression.Sequence(new SequenceTrainer.Options { LearningRate = double.NaN }))!.ParamName,
            Is.EqualTo("LearningRate"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.HazyS4D(batchSize: -1))!.ParamName,
            Is.EqualTo("BatchSize"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => ml.Regression.Trainers.HazyMlp(numberOfEpochs: 0))!.ParamName,
            Is.EqualTo("NumberOfEpochs"));
    }

    [Test]
    public void AnOptionBrokenAfterConstructionStillFailsAtFitBeforeReadingData()
    {
        var options = new MlpTrainer.Options();
        var trainer = new MLContext(1).MulticlassClassification.Trainers.HazyMlp(options);
        options.BatchSize = 0;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Fit(new UnreadableDataView()));
        Assert.That(ex!.ParamName, Is.EqualTo("BatchSize"));
    }
}

/// <summary>A data view whose every use throws <see cref="InvalidOperationException"/>: a Fit that reads it fails with that.</summary>
internal sealed class UnreadableDataView : IDataView
{
    public bool CanShuffle => false;
    public DataViewSchema Schema => throw new InvalidOperationException("The data was read.");
    public long? GetRowCount() => throw new InvalidOperationException("The data was read.");
    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => throw new InvalidOperationException("The data was read.");
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => throw new InvalidOperationException("The data was read.");
}
