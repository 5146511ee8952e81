using Microsoft.ML.Hazy.Cnn;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Cnn;

public sealed class CnnTrainerTests
{
    [Test]
    public void LearnsWhereTheBlobIs()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyCnn(BlobImages.SmallOptions()).Fit(BlobImages.Keyed(ml, BlobImages.Make(240, 1)));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(BlobImages.Keyed(ml, BlobImages.Make(150, 2))));
        Assert.That(metrics.MacroAccuracy, Is.GreaterThanOrEqualTo(0.95));
    }

    [Test]
    public void ImageSizeNotMatchingTheFeatureColumnThrowsNamingColumnExpectedAndActual()
    {
        var ml = new MLContext(1);
        var options = BlobImages.SmallOptions();
        options.Height = 5;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.MulticlassClassification.Trainers.HazyCnn(options).Fit(BlobImages.Keyed(ml, BlobImages.Make(30, 1))));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("96").And.Contain("2·5·8 = 80"));
    }

    [TestCase(nameof(CnnTrainer.Options.Channels), 0)]
    [TestCase(nameof(CnnTrainer.Options.Height), 0)]
    [TestCase(nameof(CnnTrainer.Options.Width), -3)]
    [TestCase(nameof(CnnTrainer.Options.KernelSize), 0)]
    [TestCase(nameof(CnnTrainer.Options.Stride), 0)]
    [TestCase(nameof(CnnTrainer.Options.Padding), -1)]
    public void NonPositiveSizesAreRefusedByName(string field, int value)
    {
        var options = BlobImages.SmallOptions();
        typeof(CnnTrainer.Options).GetProperty(field)!.SetValue(options, value);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyCnn(options));
        Assert.That(ex!.Message, Does.Contain($"Options.{field}"));
    }

    [Test]
    public void ShortOverloadNeedsTheImageSize()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).BinaryClassification.Trainers.HazyCnn());
        Assert.That(ex!.Message, Does.Contain("Options.Height"));
    }

    [TestCase(new int[0])]
    [TestCase(new[] { 4, 0 })]
    public void FiltersMustBePositive(int[] filters)
    {
        var options = BlobImages.SmallOptions();
        options.Filters = filters;
        Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyCnn(options));
    }

    [Test]
    public void ImageTooSmallForTheBlocksIsRefused()
    {
        var options = BlobImages.SmallOptions();
        options.Filters = new[] { 4, 4, 4, 4, 4 };
        options.Padding = 0;
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyCnn(options));
        Assert.That(ex!.Message, Does.Contain("6×8").And.Contain("too small"));
    }

    [TestCase(-0.1)]
    [TestCase(1.0)]
    public void DropoutRateOutsideRangeIsRefused(double rate)
    {
        var options = BlobImages.SmallOptions();
        options.DropoutRate = rate;
        Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).MulticlassClassification.Trainers.HazyCnn(options));
    }
}
