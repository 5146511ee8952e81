using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Heads;

public sealed class ExampleWeightTests
{
    private sealed class Row
    {
        public float Label;
        public bool Positive;
        public float Weight;
        [VectorType(4)]
        public float[] Features = Array.Empty<float>();
    }

    private static Row[] Make(int n, int seed)
    {
        var rand = new Random(seed);
        return Enumerable.Range(0, n).Select(i =>
        {
            var x = Enumerable.Range(0, 4).Select(_ => (float)(rand.NextDouble() * 2 - 1)).ToArray();
            // Rows i % 4 == 0 follow another function, so leaving them out (weight 0) changes the fit.
            float y = i % 4 == 0 ? 5 * x[2] * x[3] - 1 : 2 * x[0] - x[1] + 0.5f;
            return new Row { Label = y, Positive = y > 0, Weight = 1, Features = x };
        }).ToArray();
    }

    // Full batch, no dropout: one optimizer step per epoch on the whole set, so the weighted loss Σ wᵢlᵢ / Σ wᵢ determines the
    // updates and equal losses give equal models up to float32 summation order.
    private static MlpTrainer.Options Options(bool weighted) => new()
    {
        HiddenLayers = new[] { 8 },
        DropoutRate = 0,
        NumberOfEpochs = 15,
        BatchSize = 1000,
        LearningRate = 2e-2,
        Seed = 5,
        ExampleWeightColumnName = weighted ? nameof(Row.Weight) : null,
    };

    private static float[] Scores(MLContext ml, Row[] train, bool weighted, Row[] test, bool binary = false)
    {
        var data = ml.Data.LoadFromEnumerable(train);
        var scoring = ml.Data.LoadFromEnumerable(test);
        if (binary)
        {
            var d = ml.Transforms.CopyColumns("Label2", nameof(Row.Positive)).Fit(data);
            using var b = ml.BinaryClassification.Trainers.HazyMlp(WithLabel(Options(weighted), "Label2")).Fit(d.Transform(data));
            return b.Transform(d.Transform(scoring)).GetColumn<float>("Score").ToArray();
        }
        using var model = ml.Regression.Trainers.HazyMlp(Options(weighted)).Fit(data);
        return model.Transform(scoring).GetColumn<float>("Score").ToArray();
    }

    private static MlpTrainer.Options WithLabel(MlpTrainer.Options o, string label)
    {
        o.LabelColumnName = label;
        return o;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void WeightZeroEqualsLeavingTheRowsOut(bool binary)
    {
        var ml = new MLContext(1);
        var rows = Make(120, 1);
        var test = Make(40, 2);
        var zeroed = rows.Select((r, i) => new Row { Label = r.Label, Positive = r.Positive, Weight = i % 4 == 0 ? 0 : 1, Features = r.Features }).ToArray();
        var kept = rows.Where((_, i) => i % 4 != 0).ToArray();
        var weighted = Scores(ml, zeroed, true, test, binary);
        var without = Scores(ml, kept, false, test, binary);
        var all = Scores(ml, rows, false, test, binary);
        Assert.That(weighted, Is.EqualTo(without).Within(2e-4));
        Assert.That(weighted.Zip(all, (a, b) => Math.Abs(a - b)).Max(), Is.GreaterThan(1e-2), "the left-out rows matter, so the equality is not vacuous");
    }

    [Test]
    public void WeightTwoEqualsDuplicatingTheRows()
    {
        var ml = new MLContext(1);
        var rows = Make(90, 3);
        var test = Make(40, 4);
        var doubled = rows.Select((r, i) => new Row { Label = r.Label, Weight = i % 4 == 0 ? 2 : 1, Features = r.Features }).ToArray();
        var duplicated = rows.Concat(rows.Where((_, i) => i % 4 == 0)).ToArray();
        Assert.That(Scores(ml, doubled, true, test), Is.EqualTo(Scores(ml, duplicated, false, test)).Within(2e-4));
    }

    [Test]
    public void ValidationLossIsWeightedWhenTheValidationSetHasTheColumn()
    {
        var ml = new MLContext(1);
        var train = ml.Data.LoadFromEnumerable(Make(60, 5));
        var rows = Make(40, 6);
        var zeroed = rows.Select((r, i) => new Row { Label = r.Label, Weight = i % 4 == 0 ? 0 : 1, Features = r.Features }).ToArray();
        double?[] History(Row[] validation)
        {
            var o = Options(true);
            o.NumberOfEpochs = 3;
            o.ValidationSet = ml.Data.LoadFromEnumerable(validation);
            using var model = ml.Regression.Trainers.HazyMlp(o).Fit(train);
            return model.TrainingHistory.Select(e => e.ValidationLoss).ToArray();
        }
        var weighted = History(zeroed);
        var kept = History(rows.Where((_, i) => i % 4 != 0).ToArray());
        var all = History(rows);
        Assert.That(weighted.Select(v => v!.Value), Is.EqualTo(kept.Select(v => v!.Value)).Within(1e-5));
        Assert.That(weighted[^1], Is.Not.EqualTo(all[^1]).Within(1e-3), "the zero-weight rows would change the validation loss");
    }

    [Test]
    public void NegativeWeightIsRejectedNamingTheColumn()
    {
        var ml = new MLContext(1);
        var rows = Make(20, 1);
        rows[3].Weight = -1;
        var ex = Assert.Throws<InvalidOperationException>(() => ml.Regression.Trainers.HazyMlp(Options(true)).Fit(ml.Data.LoadFromEnumerable(rows)));
        Assert.That(ex!.Message, Does.Contain("'Weight'").And.Contain("row 3").And.Contain("non-negative"));
    }
}
