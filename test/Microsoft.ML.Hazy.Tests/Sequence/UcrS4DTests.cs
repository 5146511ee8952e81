using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Sequence;

/// <summary>S4D on real UCR/UEA data from ../shared/data/ucr: skipped, with a message, when that folder is absent.</summary>
public sealed class UcrS4DTests
{
    private static string UcrFolder() =>
        UcrData.FindSharedDataDirectory()
        ?? Ignored("The shared UCR data (../shared/data/ucr beside the repository, or $HAZY_DATA_DIR/ucr) is absent; real-data test skipped.");

    private static string Ignored(string message)
    {
        Assert.Ignore(message);
        return "";
    }

    [Test]
    public void JapaneseVowelsVariableLengthTwelveChannels()
    {
        // 270 training series of 7–29 steps × 12 cepstral channels, 9 speakers; read unpadded, as the reader gives them.
        var (train, test) = UcrTimeSeries.LoadPair(UcrFolder(), "JapaneseVowels");
        var ml = new MLContext(1);
        var trainView = train.ToDataView(ml);
        Assert.That(((Microsoft.ML.Data.VectorDataViewType)trainView.Schema["Features"].Type).IsKnownSize, Is.False, "variable-length column");
        var options = new SequenceTrainer.Options
        {
            Channels = train.ChannelCount,
            MaximumLength = Math.Max(train.Length, test.Length),
            ModelDimension = 32,
            NumberOfLayers = 2,
            Bidirectional = true,
            NumberOfEpochs = 30,
            BatchSize = 16,
            WarmupFraction = 0.1,
            S4D = new S4DOptions { StateSize = 16 },
        };
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(trainView);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test.ToDataView(ml)));
        TestContext.Out.WriteLine($"JapaneseVowels: S4D test accuracy {metrics.MicroAccuracy:F4}.");
        Assert.That(metrics.MicroAccuracy, Is.GreaterThanOrEqualTo(0.9));
    }

    [Test]
    public void BasicMotionsSixChannels()
    {
        // 40 training series of 100 steps × 6 channels (accelerometer and gyroscope), 4 activities.
        var (train, test) = UcrTimeSeries.LoadPair(UcrFolder(), "BasicMotions");
        var ml = new MLContext(1);
        var options = new SequenceTrainer.Options
        {
            Channels = train.ChannelCount,
            ModelDimension = 32,
            NumberOfLayers = 2,
            Bidirectional = true,
            NumberOfEpochs = 60,
            BatchSize = 8,
            WarmupFraction = 0.1,
            S4D = new S4DOptions { StateSize = 16 },
        };
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(train.ToDataView(ml));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test.ToDataView(ml)));
        TestContext.Out.WriteLine($"BasicMotions: S4D test accuracy {metrics.MicroAccuracy:F4}.");
        Assert.That(metrics.MicroAccuracy, Is.GreaterThanOrEqualTo(0.85));
    }
}
