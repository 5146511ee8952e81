using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.Sequence;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Robustness;

/// <summary>The penalties as options of the existing trainers: they fit, save, load and score like any model.</summary>
public sealed class MaskPenaltyTrainerTests
{
    private const int Side = 8, Size = Side * Side;

    private sealed class Row
    {
        public bool Label;
        [VectorType(Size)] public float[] Features = Array.Empty<float>();
        [VectorType(Size)] public bool[] Mask = Array.Empty<bool>();
        [VectorType(Size)] public bool[] Full = Array.Empty<bool>();
        [VectorType(Size + 1)] public float[] WrongSize = Array.Empty<float>();
        public bool HasMask;
        public float Scalar = 1f;
    }

    /// <summary>8×8 images: the label lives in the left half (inside the mask); a corner pixel copies it 90 % of the time.</summary>
    private static IDataView Images(MLContext ml, int rows, int seed)
    {
        var r = new Random(seed);
        var data = Enumerable.Range(0, rows).Select(i =>
        {
            bool y = i % 2 == 0;
            var x = Enumerable.Range(0, Size).Select(_ => (float)(r.NextDouble() * 0.2)).ToArray();
            for (int row = 2; row < 6; row++)
                x[row * Side + (y ? 1 : 2)] += 0.8f;
            if (r.NextDouble() < 0.9 == y)
                x[Size - 1] = 1f;
            return new Row
            {
                Label = y,
                Features = x,
                Mask = Enumerable.Range(0, Size).Select(j => j % Side < Side / 2).ToArray(),
                Full = Enumerable.Repeat(true, Size).ToArray(),
                WrongSize = new float[Size + 1],
                HasMask = i % 3 != 0,
            };
        }).ToArray();
        return ml.Data.LoadFromEnumerable(data);
    }

    private static CnnTrainer.Options Cnn(MaskPenaltyOptions? penalty) => new()
    {
        Height = Side,
        Width = Side,
        Filters = new[] { 4 },
        DropoutRate = 0,
        NumberOfEpochs = 3,
        BatchSize = 16,
        LearningRate = 1e-2,
        Seed = 7,
        Penalty = penalty,
    };

    private static float[] Scores(MLContext ml, ITransformer model, IDataView data) =>
        model.Transform(data).GetColumn<float>("Score").ToArray();

    [TestCase(MaskPenaltyKind.GradMask)]
    [TestCase(MaskPenaltyKind.Rrr)]
    [TestCase(MaskPenaltyKind.ActDiff)]
    public void ACnnWithAPenaltyFitsSavesLoadsAndScoresWithoutTheMask(MaskPenaltyKind kind)
    {
        var ml = new MLContext(1);
        var train = Images(ml, 96, 1);
        using var model = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { Kind = kind, HasMaskColumnName = nameof(Row.HasMask) })).Fit(train);
        var test = ml.Transforms.SelectColumns(nameof(Row.Label), nameof(Row.Features)).Fit(Images(ml, 40, 2)).Transform(Images(ml, 40, 2));
        var scores = Scores(ml, model, test);
        Assert.That(scores.All(float.IsFinite));
        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"mask-{kind}-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var loaded = ml.Model.Load(path, out _);
            Assert.That(Scores(ml, loaded, test), Is.EqualTo(scores).Within(1e-5), "the loaded model scores rows without a mask column as the trained one");
            (loaded as IDisposable)?.Dispose();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase(MaskPenaltyKind.GradMask)]
    [TestCase(MaskPenaltyKind.ActDiff)]
    public void AFullMaskTrainsExactlyAsWithoutAPenalty(MaskPenaltyKind kind)
    {
        var ml = new MLContext(1);
        var train = Images(ml, 64, 1);
        using var plain = ml.BinaryClassification.Trainers.HazyCnn(Cnn(null)).Fit(train);
        using var full = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { Kind = kind, MaskColumnName = nameof(Row.Full) })).Fit(train);
        using var partial = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { Kind = kind, Weight = 5 })).Fit(train);
        var test = Images(ml, 30, 2);
        Assert.That(Scores(ml, full, test), Is.EqualTo(Scores(ml, plain, test)));
        Assert.That(Scores(ml, partial, test), Is.Not.EqualTo(Scores(ml, plain, test)), "a partial mask changes the training");
    }

    [Test]
    public void TheAdversarialActDiffChangesTrainingButNotWhatIsSaved()
    {
        var ml = new MLContext(1);
        var train = Images(ml, 64, 1);
        var adversarial = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff, AdversarialWeight = 1 };
        using var plain = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff })).Fit(train);
        using var model = ml.BinaryClassification.Trainers.HazyCnn(Cnn(adversarial)).Fit(train);
        var test = ml.Transforms.SelectColumns(nameof(Row.Label), nameof(Row.Features)).Fit(Images(ml, 30, 2)).Transform(Images(ml, 30, 2));
        var scores = Scores(ml, model, test);
        Assert.That(scores, Is.Not.EqualTo(Scores(ml, plain, test)), "the adversarial term changes the training");
        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"mask-disc-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, train.Schema, path);
            var loaded = ml.Model.Load(path, out _);
            Assert.That(Scores(ml, loaded, test), Is.EqualTo(scores).Within(1e-5), "the discriminator is not part of the model");
            (loaded as IDisposable)?.Dispose();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void AnMlpWithRrrAndAnS4DWithActDiffTrain()
    {
        var ml = new MLContext(1);
        var train = Images(ml, 64, 1);
        var mlp = new MlpTrainer.Options { HiddenLayers = new[] { 8 }, NumberOfEpochs = 2, BatchSize = 16, Seed = 1, Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.Rrr } };
        using var a = ml.BinaryClassification.Trainers.HazyMlp(mlp).Fit(train);
        Assert.That(Scores(ml, a, train).All(float.IsFinite));
        var s4d = new SequenceTrainer.Options
        {
            Channels = 1, ModelDimension = 8, NumberOfLayers = 1, NumberOfEpochs = 2, BatchSize = 16, Seed = 1, Bidirectional = true,
            Penalty = new MaskPenaltyOptions { Kind = MaskPenaltyKind.ActDiff },
        };
        using var b = ml.BinaryClassification.Trainers.HazyS4D(s4d).Fit(train);
        Assert.That(Scores(ml, b, train).All(float.IsFinite));
    }

    [TestCase(nameof(Row.WrongSize), "has type Vector<Single, 65>")]
    [TestCase(nameof(Row.Scalar), "has type Single")]
    [TestCase("Missing", "not found")]
    public void AMaskOfTheWrongShapeOrTypeIsRejectedNamingTheColumn(string column, string problem)
    {
        var ml = new MLContext(1);
        var trainer = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { MaskColumnName = column }));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Fit(Images(ml, 16, 1)));
        Assert.That(ex!.Message, Does.Contain($"Column '{column}'").And.Contain(problem).And.Contain("64"));
    }

    [Test]
    public void AHasMaskColumnOfTheWrongTypeAndAnRrrRegressionAreRejected()
    {
        var ml = new MLContext(1);
        var trainer = ml.BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { HasMaskColumnName = nameof(Row.Features) }));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Fit(Images(ml, 16, 1)));
        Assert.That(ex!.Message, Does.Contain("Column 'Features'").And.Contain("expected Boolean or Single"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MLContext(1).BinaryClassification.Trainers.HazyCnn(Cnn(new MaskPenaltyOptions { Weight = -1 })));
    }
}
