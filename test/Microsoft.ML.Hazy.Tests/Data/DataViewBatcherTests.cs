using Microsoft.ML.Hazy.Tests.Mlp;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Data;

[TestFixture]
public sealed class DataViewBatcherTests
{
    [TestCase(true)]
    [TestCase(false)]
    public void NonFiniteTrainingFeatureNamesItsRowInCursorOrder(bool viewShuffles)
    {
        var ml = new MLContext(1);
        var rows = Blobs.Make(40, 1);
        rows[13].Features[2] = float.NaN;
        // A cached view shuffles itself (a random-order cursor); an enumerable goes through the streaming shuffle.
        var keyed = Blobs.Keyed(ml, rows);
        var data = viewShuffles ? ml.Data.Cache(keyed) : keyed;
        Assert.That(data.CanShuffle, Is.EqualTo(viewShuffles));
        var options = Blobs.SmallOptions();
        options.Seed = 3;

        var ex = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data));

        Assert.That(ex!.Message, Does.Contain("'Features'").And.Match(@"\brow 13\b").And.Contain("slot 2").And.Contain("NaN"));
        Assert.That(ex.Message, Does.Not.Contain("validation"));
    }

    [Test]
    public void NonFiniteValidationFeatureSaysValidationSet()
    {
        var ml = new MLContext(1);
        var valid = Blobs.Make(30, 2);
        valid[21].Features[0] = float.PositiveInfinity;
        var options = Blobs.SmallOptions();
        options.Seed = 3;
        options.ValidationSet = Blobs.Keyed(ml, valid);

        var ex = Assert.Throws<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(Blobs.Keyed(ml, Blobs.Make(40, 1))));

        Assert.That(ex!.Message, Does.Contain("'Features'").And.Match(@"\brow 21\b").And.Contain("validation set"));
    }

    [Test]
    public void NonFiniteValidationLabelSaysValidationSet()
    {
        var ml = new MLContext(1);
        var valid = Blobs.Make(30, 2);
        valid[7].Target = float.NaN;
        var options = Blobs.SmallOptions();
        options.Seed = 3;
        options.ValidationSet = Blobs.WithLabel(ml, valid, nameof(Blobs.Row.Target));

        var ex = Assert.Throws<InvalidOperationException>(() =>
            ml.Regression.Trainers.HazyMlp(options).Fit(Blobs.WithLabel(ml, Blobs.Make(40, 1), nameof(Blobs.Row.Target))));

        Assert.That(ex!.Message, Does.Contain("'Label'").And.Match(@"\brow 7\b").And.Contain("validation set").And.Contain("NaN"));
    }
}
